//! The agent's side: the device authorization grant, keeping its session fresh, token
//! exchange, and calls to protected resources, every request with a DPoP proof by the
//! session key.

use std::sync::Arc;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::dbsc::ClientError;
use super::key::{ProofSigner, SessionKey, sign_jws};
use crate::clock::Clock;
use crate::crypto::{Secret, base64url, secret::sha256};
use crate::dbsc::headers;
use crate::dbsc::proof::PROOF_TYPE as DBSC_PROOF_TYPE;
use crate::http::routes;
use crate::oauth::{self, dpop};

/// The device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: Option<String>,
    pub issued_token_type: Option<String>,
    /// devbound extension on the device grant: the agent's bound session.
    pub session_id: Option<String>,
}

/// The result of one device-code poll.
#[derive(Debug)]
pub enum Poll {
    Issued(TokenResponse),
    /// `authorization_pending` or `slow_down`: poll again after the interval.
    Wait {
        slow_down: bool,
    },
}

/// The parameters of a token exchange request.
#[derive(Debug, Default, Clone)]
pub struct ExchangeParams<'a> {
    pub subject_token: &'a str,
    pub actor_token: Option<&'a str>,
    pub audiences: &'a [&'a str],
    pub scope: Option<&'a str>,
    pub may_act: Option<&'a str>,
}

/// An agent holding a session key, its bound session and its grant token. The key is a
/// software key unless another [`ProofSigner`], such as a TPM-held key, is given.
#[derive(Debug)]
pub struct AgentClient<S: ProofSigner = SessionKey> {
    http: reqwest::Client,
    origin: String,
    key: S,
    clock: Arc<dyn Clock>,
    pub agent_id: String,
    pub session_id: Option<String>,
    pub grant_token: Option<String>,
    challenge: Option<String>,
}

impl<S: ProofSigner> AgentClient<S> {
    /// `clock` sets the `iat` of proofs; it must agree with the server's within a minute.
    pub fn new(
        http: reqwest::Client,
        origin: &str,
        agent_id: &str,
        key: S,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            origin: origin.trim_end_matches('/').to_owned(),
            key,
            clock,
            agent_id: agent_id.to_owned(),
            session_id: None,
            grant_token: None,
            challenge: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn key(&self) -> &S {
        &self.key
    }

    /// Returns the clock that sets the `iat` of this agent's proofs.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Signs a DPoP proof (RFC 9449 §4.2) for `method` and `url`, with `ath` for a token.
    pub fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<String, ClientError> {
        let header = json!({
            "typ": dpop::PROOF_TYPE,
            "alg": self.key.algorithm().name(),
            "jwk": self.key.public_jwk(),
        });
        let jti = Secret::generate(&mut rand::thread_rng(), 16);
        let mut claims = json!({
            "jti": jti.expose(),
            "htm": method,
            "htu": url,
            "iat": self.clock.now(),
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(base64url::encode(sha256(token.as_bytes())));
        }
        sign_jws(&self.key, &header, &claims).map_err(ClientError::Signing)
    }

    /// Starts the device grant; the owner approves the returned user code.
    pub async fn start_login(
        &self,
        scope: Option<&str>,
    ) -> Result<DeviceAuthorization, ClientError> {
        let mut form = vec![("client_id", self.agent_id.as_str())];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        if let Some(session_id) = &self.session_id {
            form.push(("session_id", session_id));
        }
        let response = self
            .post_with_proof(routes::OAUTH_DEVICE_AUTHORIZATION, &form)
            .await?;
        json_body(response).await
    }

    /// Polls the token endpoint once for the device grant (RFC 8628 §3.4).
    pub async fn poll_login(
        &mut self,
        authorization: &DeviceAuthorization,
    ) -> Result<Poll, ClientError> {
        let form = [
            ("grant_type", oauth::GRANT_DEVICE_CODE),
            ("device_code", authorization.device_code.as_str()),
            ("client_id", self.agent_id.as_str()),
        ];
        let response = self.post_with_proof(routes::OAUTH_TOKEN, &form).await?;
        let status = response.status();
        let body = response.text().await?;
        if status == StatusCode::BAD_REQUEST {
            let error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|value| value["error"].as_str().map(str::to_owned));
            match error.as_deref() {
                Some("authorization_pending") => return Ok(Poll::Wait { slow_down: false }),
                Some("slow_down") => return Ok(Poll::Wait { slow_down: true }),
                _ => {}
            }
        }
        if status != StatusCode::OK {
            return Err(ClientError::Status { status, body });
        }
        let issued: TokenResponse = serde_json::from_str(&body)
            .map_err(|error| ClientError::Protocol(format!("token response: {error}")))?;
        self.grant_token = Some(issued.access_token.clone());
        if issued.session_id.is_some() {
            self.session_id.clone_from(&issued.session_id);
        }
        Ok(Poll::Issued(issued))
    }

    /// Runs the device grant to the end: shows the code through `show`, then polls at the
    /// server's interval until the owner decides or the code expires.
    pub async fn login(
        &mut self,
        scope: Option<&str>,
        show: impl FnOnce(&DeviceAuthorization),
    ) -> Result<TokenResponse, ClientError> {
        let authorization = self.start_login(scope).await?;
        show(&authorization);
        let mut interval = authorization.interval.max(1);
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
            match self.poll_login(&authorization).await? {
                Poll::Issued(token) => return Ok(token),
                Poll::Wait { slow_down: true } => interval += 5,
                Poll::Wait { slow_down: false } => {}
            }
        }
    }

    /// Proves possession of the session key again by signing the server's challenge at the
    /// DBSC refresh endpoint, which renews the session's last proof time.
    pub async fn refresh_session(&mut self) -> Result<(), ClientError> {
        let session_id = self
            .session_id
            .clone()
            .ok_or_else(|| ClientError::Protocol("no session to refresh".into()))?;
        for _ in 0..2 {
            let mut request = self
                .http
                .post(self.url(routes::REFRESH))
                .header(headers::SESSION_ID, &session_id);
            if let Some(challenge) = self.challenge.take() {
                let header = json!({ "alg": self.key.algorithm().name(), "typ": DBSC_PROOF_TYPE });
                let proof = sign_jws(&self.key, &header, &json!({ "jti": challenge }))
                    .map_err(ClientError::Signing)?;
                request = request.header(headers::RESPONSE, proof);
            }
            let response = request.send().await?;
            self.remember_challenge(&response, &session_id);
            match response.status() {
                StatusCode::OK => return Ok(()),
                StatusCode::FORBIDDEN if self.challenge.is_some() => {}
                status => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(ClientError::Status { status, body });
                }
            }
        }
        Err(ClientError::Protocol(
            "server rejected the response to its own challenge".into(),
        ))
    }

    /// Sends a token exchange request and returns the raw response.
    pub async fn exchange_response(
        &self,
        params: &ExchangeParams<'_>,
    ) -> Result<reqwest::Response, ClientError> {
        self.post_with_proof(routes::OAUTH_TOKEN, &exchange_form(params))
            .await
    }

    /// POSTs a form to a devbound endpoint with a DPoP proof for it.
    async fn post_with_proof(
        &self,
        path: &str,
        form: &(impl serde::Serialize + ?Sized),
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let proof = self.dpop_proof("POST", &url, None)?;
        Ok(self
            .http
            .post(&url)
            .header(dpop::HEADER, proof)
            .form(form)
            .send()
            .await?)
    }

    /// Exchanges a token for a DPoP-bound access token (RFC 8693 §2).
    pub async fn exchange(
        &self,
        params: &ExchangeParams<'_>,
    ) -> Result<TokenResponse, ClientError> {
        json_body(self.exchange_response(params).await?).await
    }

    /// Exchanges the grant token for an access token to `audiences` with `scope`.
    pub async fn token(
        &self,
        audiences: &[&str],
        scope: Option<&str>,
    ) -> Result<TokenResponse, ClientError> {
        let grant = self
            .grant_token
            .as_deref()
            .ok_or_else(|| ClientError::Protocol("not logged in: no grant token".into()))?;
        self.exchange(&ExchangeParams {
            subject_token: grant,
            audiences,
            scope,
            ..ExchangeParams::default()
        })
        .await
    }

    /// Calls a protected URL with `Authorization: DPoP` and a fresh proof (RFC 9449 §7).
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        access_token: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let proof = self.dpop_proof(method.as_str(), url, Some(access_token))?;
        Ok(self
            .http
            .request(method, url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("DPoP {access_token}"),
            )
            .header(dpop::HEADER, proof)
            .send()
            .await?)
    }

    fn remember_challenge(&mut self, response: &reqwest::Response, session_id: &str) {
        let Some(value) = response.headers().get(headers::CHALLENGE) else {
            return;
        };
        if let Ok(challenges) = headers::parse_challenges(value.as_bytes()) {
            self.challenge = challenges
                .into_iter()
                .find(|(_, id)| id.as_deref().is_none_or(|id| id == session_id))
                .map(|(challenge, _)| challenge);
        }
    }
}

/// Lets several agents on one device share its session key, such as one TPM-held key.
impl<S: ProofSigner + ?Sized> ProofSigner for Arc<S> {
    fn algorithm(&self) -> crate::crypto::Algorithm {
        (**self).algorithm()
    }

    fn public_jwk(&self) -> serde_json::Value {
        (**self).public_jwk()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        (**self).sign(message)
    }
}

fn exchange_form(params: &ExchangeParams<'_>) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", oauth::GRANT_TOKEN_EXCHANGE.to_owned()),
        ("subject_token", params.subject_token.to_owned()),
        (
            "subject_token_type",
            oauth::TOKEN_TYPE_ACCESS_TOKEN.to_owned(),
        ),
    ];
    if let Some(actor) = params.actor_token {
        form.push(("actor_token", actor.to_owned()));
        form.push((
            "actor_token_type",
            oauth::TOKEN_TYPE_ACCESS_TOKEN.to_owned(),
        ));
    }
    for audience in params.audiences {
        form.push(("resource", (*audience).to_owned()));
    }
    if let Some(scope) = params.scope {
        form.push(("scope", scope.to_owned()));
    }
    if let Some(may_act) = params.may_act {
        form.push(("may_act", may_act.to_owned()));
    }
    form
}

async fn json_body<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        return Err(ClientError::Status { status, body });
    }
    serde_json::from_str(&body).map_err(|error| ClientError::Protocol(error.to_string()))
}
