//! The HTTP layer: routes, extractors and responses over the protocol modules.

mod admin;
mod agents;
mod api;
pub mod auth;
mod budget;
mod dbsc;
mod devices;
mod enroll;
mod oauth;
mod pages;
mod passkey_views;
mod passkeys;
pub mod routes;
mod server;
mod step_up;
mod views;

pub use admin::{UserChange, set_user_disabled};
pub use devices::DeviceView;
pub use enroll::{InviteView, create_invite};
pub use server::{ADMIN_TOKEN_FILE, RunningServer, SERVER_FILE, ServeError, ServerInfo, start};
pub use step_up::{
    require_json as require_step_up_json, require_page as require_step_up, step_up_url,
};
pub use views::{SessionView, utc};

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::clock::Clock;
use crate::crypto::Secret;
use crate::dbsc::Policy;
use crate::metrics::Metrics;
use crate::passkey::RelyingParty;
use crate::store::Store;
use crate::tpm::{EnrollmentPolicy, TrustStore};

/// State shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub oauth: Arc<OAuthState>,
    /// The WebAuthn Relying Party and the operator's passkey policies.
    pub passkeys: Arc<RelyingParty>,
    admin_token: Arc<Secret>,
    /// TPM vendor roots and enrollment challenge lifetime; see [`AppState::with_enrollment`].
    pub enrollment: Arc<EnrollmentPolicy>,
    /// Whether a device that fails the `tpm` checks may still enroll at `software`.
    pub software_fallback: bool,
    /// Caps the refused decisions appended to the audit log per minute.
    refusals: Arc<std::sync::Mutex<crate::audit::limit::RefusalLimiter>>,
    /// Bounds concurrent Argon2 password checks, each of which takes 19 MiB and tens of
    /// milliseconds of CPU, so that a flood of sign-ins cannot exhaust memory.
    password_checks: Arc<tokio::sync::Semaphore>,
    /// The budget of passkey sign-ins that may start this minute ([`budget`]).
    sign_in_budget: Arc<std::sync::Mutex<budget::MinuteBudget>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        policy: Policy,
        clock: Arc<dyn Clock>,
        admin_token: Secret,
        passkeys: RelyingParty,
    ) -> Self {
        let enrollment = EnrollmentPolicy {
            trust_store: TrustStore::default(),
            challenge_ttl: policy.challenge_ttl,
        };
        let oauth = Arc::new(OAuthState {
            keys: crate::oauth::KeyRing::default(),
            replay: crate::oauth::replay::ReplayCache::new(clock.now()),
            settings: crate::oauth::Settings {
                issuer: policy.origin.clone(),
                // An agent session is fresh for as long as a bound cookie would be.
                proof_window: policy.cookie_ttl,
            },
        });
        let sign_in_budget = budget::MinuteBudget::new(passkeys.settings.sign_in_rate);
        Self {
            store,
            enrollment: Arc::new(enrollment),
            oauth,
            software_fallback: false,
            policy: Arc::new(policy),
            metrics: Arc::new(Metrics::new()),
            clock,
            passkeys: Arc::new(passkeys),
            admin_token: Arc::new(admin_token),
            refusals: Arc::default(),
            sign_in_budget: Arc::new(std::sync::Mutex::new(sign_in_budget)),
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |cpus| cpus.get().max(2)),
            )),
        }
    }
}

impl AppState {
    /// Appends a security decision to the audit log.
    ///
    /// Refusals of anonymous requests beyond
    /// [`MAX_REFUSALS_PER_MINUTE`](crate::audit::limit::MAX_REFUSALS_PER_MINUTE) are counted
    /// instead, and the next such refusal recorded is preceded by an `audit.suppressed` entry
    /// with the count. A failed append is logged at `error` and does not change the
    /// answer: the decision was already made and stored, and the operator must fix the database
    /// either way.
    pub fn audit(&self, event: &crate::audit::Event) {
        use crate::audit::limit::Admission;

        let at = self.clock.now();
        if event.outcome == crate::audit::Outcome::Refused && event.is_anonymous() {
            let admission = match self.refusals.lock() {
                Ok(mut limiter) => limiter.admit(at),
                Err(_) => Admission::Record { suppressed: 0 },
            };
            match admission {
                Admission::Record { suppressed: 0 } => {}
                Admission::Record { suppressed } => {
                    self.append_audit(&crate::audit::Event::refused(
                        "devbound",
                        "audit.suppressed",
                        "refusals",
                        format!("{suppressed} refused requests over the per-minute cap were not recorded"),
                    ));
                }
                Admission::Suppress { first } => {
                    if first {
                        tracing::warn!(
                            action = event.action,
                            "too many refused requests; counting further refusals instead of recording them in the audit log"
                        );
                    }
                    return;
                }
            }
        }
        self.append_audit(event);
    }

    fn append_audit(&self, event: &crate::audit::Event) {
        let at = self.clock.now();
        let appended = self
            .store
            .append_audit(&mut |previous| crate::audit::seal(previous, at, event));
        if let Err(error) = appended {
            tracing::error!(action = event.action, %error, "cannot append to the audit log");
        }
    }

    /// Lets a device that fails the `tpm` checks enroll at `software` instead of being refused.
    #[must_use]
    pub fn with_software_fallback(mut self, allowed: bool) -> Self {
        self.software_fallback = allowed;
        self
    }

    /// Sets the policy TPM enrollment is checked against. Without it the trust store is empty
    /// and every enrollment is refused.
    #[must_use]
    pub fn with_enrollment(mut self, enrollment: EnrollmentPolicy) -> Self {
        self.enrollment = Arc::new(enrollment);
        self
    }
}

/// The token service's signing keys and settings.
#[derive(Debug)]
pub struct OAuthState {
    pub keys: crate::oauth::KeyRing,
    /// DPoP proofs spent at the token endpoint.
    pub replay: crate::oauth::replay::ReplayCache,
    pub settings: crate::oauth::Settings,
}

/// Builds the router. Paths come from [`routes`], shared with the client and the tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(routes::ROOT, get(pages::root))
        .route(routes::LOGIN, get(pages::login_form).post(pages::login))
        .route(routes::LOGOUT, post(pages::logout))
        .route(routes::APP, get(pages::app))
        .route(routes::SESSIONS, get(pages::sessions))
        .route(routes::SESSION_REVOKE, post(pages::revoke_session))
        .route(routes::REGISTER, post(dbsc::register))
        .route(routes::REFRESH, post(dbsc::refresh))
        .route(routes::API_SESSIONS, get(api::list_sessions))
        .route(routes::API_SESSION, delete(api::revoke_session))
        .route(
            routes::ADMIN_USERS,
            get(admin::list_users).post(admin::add_user),
        )
        .route(routes::ADMIN_SESSIONS, get(admin::list_sessions))
        .route(routes::ADMIN_SESSION_REVOKE, post(admin::revoke_session))
        .route(routes::OAUTH_METADATA, get(oauth::metadata))
        .route(routes::OAUTH_TOKEN, post(oauth::token))
        .route(
            routes::OAUTH_DEVICE_AUTHORIZATION,
            post(oauth::device_authorization),
        )
        .route(routes::OAUTH_INTROSPECT, post(oauth::introspect))
        .route(routes::OAUTH_REVOKE, post(oauth::revoke))
        .route(routes::OAUTH_JWKS, get(oauth::jwks))
        .route(
            routes::DEVICE,
            get(agents::device_page).post(agents::device_decision),
        )
        .route(
            routes::AGENTS,
            get(agents::agents_page).post(agents::create_agent_form),
        )
        .route(routes::AGENT_STATE, post(agents::agent_state_form))
        .route(
            routes::API_AGENTS,
            get(agents::api_list).post(agents::api_create),
        )
        .route(
            routes::API_AGENT,
            get(agents::api_get)
                .patch(agents::api_set_state)
                .delete(agents::api_revoke),
        )
        .route(
            routes::ADMIN_AGENTS,
            get(agents::admin_list).post(agents::admin_create),
        )
        .route(routes::ADMIN_AGENT_STATE, post(agents::admin_set_state))
        .route(routes::ADMIN_KEYS_ROTATE, post(agents::admin_rotate_keys))
        .route(
            routes::PASSKEY_SIGN_IN_OPTIONS,
            post(passkeys::sign_in_options),
        )
        .route(routes::PASSKEY_SIGN_IN, post(passkeys::sign_in))
        .route(routes::PASSKEYS, get(passkeys::list_page))
        .route(
            routes::PASSKEY_REGISTER_OPTIONS,
            post(passkeys::register_options),
        )
        .route(routes::PASSKEY_REGISTER, post(passkeys::register))
        .route(routes::PASSKEY_RENAME, post(passkeys::rename))
        .route(routes::PASSKEY_REMOVE, post(passkeys::remove))
        .route(routes::STEP_UP, get(step_up::page).post(step_up::verify))
        .route(routes::STEP_UP_OPTIONS, post(step_up::options))
        .route(routes::API_PASSKEYS, get(passkeys::list_json))
        .route(routes::ENROLL, get(enroll::page).post(enroll::finish))
        .route(routes::ENROLL_OPTIONS, post(enroll::options))
        .route(routes::ADMIN_USER_INVITE, post(enroll::invite))
        .route(routes::ADMIN_USER_DISABLE, post(admin::disable_user))
        .route(routes::ADMIN_USER_ENABLE, post(admin::enable_user))
        .route(routes::ADMIN_AUDIT, get(admin::list_audit))
        .route(routes::DEVICES, get(devices::devices_page))
        .route(routes::DEVICE_CODES, post(devices::create_code_page))
        .route(routes::DEVICE_REVOKE, post(devices::revoke_device_page))
        .route(routes::API_DEVICES, get(devices::api_list_devices))
        .route(routes::API_DEVICE, delete(devices::api_revoke_device))
        .route(routes::API_DEVICE_CODES, post(devices::api_create_code))
        .route(routes::API_ENROLL_START, post(devices::enroll_start))
        .route(routes::API_ENROLL_FINISH, post(devices::enroll_finish))
        .route(routes::API_ATTESTED, get(devices::api_attested))
        .route(routes::ADMIN_DEVICES, get(devices::admin_list_devices))
        .route(
            routes::ADMIN_DEVICE_REVOKE,
            post(devices::admin_revoke_device),
        )
        .route(routes::HEALTHZ, get(|| async { "ok\n" }))
        .route(routes::METRICS, get(metrics))
        .with_state(state)
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
