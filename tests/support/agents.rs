//! A devbound server with a signed-in owner, the example protected API, and helpers to
//! register agents and run their device grant.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::sync::Arc;

use devbound::client::{
    AgentClient, DbscClient, Poll, ProofSigner, SessionKey, TokenResponse, https_client,
};
use devbound::clock::Clock;
use devbound::crypto::Algorithm;
use devbound::example_api::{self, ExampleApiConfig, RunningExampleApi};
use devbound::http::routes;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use super::server::TestServer;

pub const OWNER: &str = "alice";

/// The server, its owner's bound browser session, and the example API.
pub struct AgentWorld {
    pub server: TestServer,
    pub owner: DbscClient,
    pub api: RunningExampleApi,
    _api_dir: tempfile::TempDir,
}

impl AgentWorld {
    /// Starts a server with a manual clock, signs in the owner and starts the example API.
    pub async fn start() -> Self {
        Self::start_with_clock(true).await
    }

    /// Starts the world with a manual clock or the system clock (for spawned clients).
    pub async fn start_with_clock(manual: bool) -> Self {
        let server = TestServer::start(devbound::config::ServeOptions::default(), manual).await;
        Self::with_server(server).await
    }

    /// Signs in the owner on `server` and starts the example API next to it.
    pub async fn with_server(server: TestServer) -> Self {
        let owner = server.bound_client(OWNER, Algorithm::Es256).await;
        let api_dir = tempfile::tempdir().unwrap();
        let api = example_api::start(
            ExampleApiConfig {
                issuer: server.url().to_owned(),
                issuer_cert_pem: server.cert_pem.clone(),
                data_dir: api_dir.path().to_path_buf(),
            },
            server.server.state.clock.clone(),
        )
        .await
        .unwrap();
        Self {
            server,
            owner,
            api,
            _api_dir: api_dir,
        }
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.server.server.state.clock.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// Builds an HTTPS client that trusts both devbound and the example API.
    pub fn http(&self) -> reqwest::Client {
        let mut roots = self.server.cert_pem.clone();
        roots.extend_from_slice(&self.api.cert_pem);
        https_client(&roots).unwrap()
    }

    /// Registers an agent of the owner through the JSON API and returns its id.
    pub async fn register_agent(
        &self,
        name: &str,
        scopes: &[&str],
        audiences: &[&str],
        required_assurance: &str,
    ) -> String {
        let response = self
            .http()
            .post(self.url(routes::API_AGENTS))
            .header(COOKIE, self.owner.cookie_header())
            .json(&json!({
                "name": name,
                "scopes": scopes,
                "audiences": audiences,
                "required_assurance": required_assurance,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "agent registration");
        let agent: Value = response.json().await.unwrap();
        agent["id"].as_str().unwrap().to_owned()
    }

    /// Changes an agent's state as its owner; returns the response status.
    pub async fn set_agent_state(&self, agent_id: &str, state: &str) -> StatusCode {
        self.http()
            .patch(self.url(&routes::with_id(routes::API_AGENT, agent_id)))
            .header(COOKIE, self.owner.cookie_header())
            .json(&json!({ "state": state }))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Creates a client for `agent_id` with a new ES256 session key.
    pub fn agent_client(&self, agent_id: &str) -> AgentClient {
        AgentClient::new(
            self.http(),
            self.server.url(),
            agent_id,
            SessionKey::generate(Algorithm::Es256).unwrap(),
            self.clock(),
        )
    }

    /// Approves or denies a user code as the signed-in owner; returns the page's status.
    pub async fn decide(&self, user_code: &str, decision: &str) -> StatusCode {
        self.http()
            .post(self.url(routes::DEVICE))
            .header(COOKIE, self.owner.cookie_header())
            .form(&[("user_code", user_code), ("decision", decision)])
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Runs the device grant for `agent`: start, owner approval, one poll.
    pub async fn login<S: ProofSigner>(&self, agent: &mut AgentClient<S>) -> TokenResponse {
        let authorization = agent.start_login(None).await.unwrap();
        assert_eq!(
            self.decide(&authorization.user_code, "approve").await,
            StatusCode::OK
        );
        match agent.poll_login(&authorization).await.unwrap() {
            Poll::Issued(token) => token,
            Poll::Wait { .. } => panic!("approved grant is still pending"),
        }
    }

    /// Registers an agent and logs it in with a software session.
    pub async fn logged_in_agent(
        &self,
        name: &str,
        scopes: &[&str],
        audiences: &[&str],
    ) -> AgentClient {
        let id = self
            .register_agent(name, scopes, audiences, "software")
            .await;
        let mut agent = self.agent_client(&id);
        self.login(&mut agent).await;
        agent
    }

    /// Introspects a token at devbound.
    pub async fn introspect(&self, token: &str) -> Value {
        self.http()
            .post(self.url(routes::OAUTH_INTROSPECT))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Calls the example tool with `token` as `agent`; returns the status and body.
    pub async fn call_tool<S: ProofSigner>(
        &self,
        agent: &AgentClient<S>,
        token: &str,
    ) -> (StatusCode, Value) {
        let response = agent
            .call(reqwest::Method::GET, &self.api.tool_url(), token)
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }
}

/// Reads an OAuth error response: its status and `error` code.
pub async fn oauth_error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Lists the `act` chain of a claims object, most recent actor first.
pub fn act_chain(claims: &Value) -> Vec<String> {
    let mut chain = Vec::new();
    let mut actor = &claims["act"];
    while let Some(sub) = actor["sub"].as_str() {
        chain.push(sub.to_owned());
        actor = &actor["act"];
    }
    chain
}
