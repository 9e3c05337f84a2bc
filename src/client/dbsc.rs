//! A software DBSC client: signs in, registers a session key and refreshes like a browser.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::json;

use super::key::{ProofSigner, SessionKey, sign_jws};
use crate::dbsc::SessionInstructions;
use crate::dbsc::headers::{self, RegistrationOffer};
use crate::dbsc::proof::PROOF_TYPE;
use crate::http::routes;

/// A failed client operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client setup failed: {0}")]
    Setup(String),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("server response is not valid DBSC: {0}")]
    Protocol(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The outcome of a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new cookie and the same session; `requests` is how many POSTs it took.
    Renewed { requests: u32 },
    /// The server ended the session (`continue: false`).
    Terminated,
}

/// One DBSC session, held by a software key unless another [`ProofSigner`] is given.
#[derive(Debug)]
pub struct DbscClient<S = SessionKey> {
    http: reqwest::Client,
    origin: String,
    key: S,
    cookies: HashMap<String, String>,
    pub session_id: Option<String>,
    pub challenge: Option<String>,
    /// `Max-Age` of the last cookie the server set, in seconds.
    pub cookie_max_age: Option<u64>,
}

impl<S: ProofSigner> DbscClient<S> {
    pub fn new(http: reqwest::Client, origin: &str, key: S) -> Self {
        Self {
            http,
            origin: origin.trim_end_matches('/').to_owned(),
            key,
            cookies: HashMap::new(),
            session_id: None,
            challenge: None,
            cookie_max_age: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn key(&self) -> &S {
        &self.key
    }

    /// Ends the client and returns its signer, so that a TPM key can be flushed.
    pub fn into_signer(self) -> S {
        self.key
    }

    /// Signs in with a password and returns the registration the server offered.
    pub async fn sign_in(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<RegistrationOffer, ClientError> {
        let response = self
            .http
            .post(self.url(routes::LOGIN))
            .form(&[("username", user), ("password", password)])
            .send()
            .await?;
        let offer = response
            .headers()
            .get(headers::REGISTRATION)
            .map(|value| headers::parse_registration(value.as_bytes()));
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Status {
                status,
                body: response.text().await.unwrap_or_default(),
            });
        }
        match offer {
            Some(Ok(mut offers)) if !offers.is_empty() => Ok(offers.remove(0)),
            Some(Ok(_)) | None => Err(ClientError::Protocol(
                "sign-in offered no registration".into(),
            )),
            Some(Err(error)) => Err(ClientError::Protocol(error.to_string())),
        }
    }

    /// Signs in and registers this client's key: a bound session in one call.
    pub async fn sign_in_and_register(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<SessionInstructions, ClientError> {
        let offer = self.sign_in(user, password).await?;
        self.register(&offer).await
    }

    /// Answers a registration offer with a proof signed by this client's key.
    pub async fn register(
        &mut self,
        offer: &RegistrationOffer,
    ) -> Result<SessionInstructions, ClientError> {
        let proof = self.registration_proof(&offer.challenge, offer.authorization.as_deref())?;
        let response = self.post_register(&offer.path, &proof).await?;
        self.accept_instructions(response).await
    }

    /// Signs a registration proof as Chromium 156 builds it.
    pub fn registration_proof(
        &self,
        challenge: &str,
        authorization: Option<&str>,
    ) -> Result<String, ClientError> {
        let header = json!({ "alg": self.key.algorithm().name(), "typ": PROOF_TYPE, "jwk": self.key.public_jwk() });
        let mut claims = json!({ "jti": challenge });
        if let Some(authorization) = authorization {
            claims["authorization"] = json!(authorization);
        }
        sign_jws(&self.key, &header, &claims).map_err(ClientError::Signing)
    }

    /// Signs a refresh proof as Chromium 156 builds it: no `jwk`, only `jti`.
    pub fn refresh_proof(&self, challenge: &str) -> Result<String, ClientError> {
        let header = json!({ "alg": self.key.algorithm().name(), "typ": PROOF_TYPE });
        sign_jws(&self.key, &header, &json!({ "jti": challenge })).map_err(ClientError::Signing)
    }

    /// POSTs a registration proof, unquoted as Chromium sends it.
    pub async fn post_register(
        &self,
        path: &str,
        proof: &str,
    ) -> Result<reqwest::Response, ClientError> {
        Ok(self
            .http
            .post(self.url(path))
            .header(headers::RESPONSE, proof)
            .send()
            .await?)
    }

    /// POSTs to the refresh endpoint for `session_id`, with a proof if given.
    pub async fn post_refresh(
        &self,
        session_id: &str,
        proof: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .post(self.url(routes::REFRESH))
            .header(headers::SESSION_ID, session_id)
            .header(COOKIE, self.cookie_header());
        if let Some(proof) = proof {
            request = request.header(headers::RESPONSE, proof);
        }
        Ok(request.send().await?)
    }

    /// Refreshes the session: signs the cached challenge if there is one, and responds to a 403
    /// challenge once, as Chromium does.
    pub async fn refresh(&mut self) -> Result<RefreshOutcome, ClientError> {
        let session_id = self
            .session_id
            .clone()
            .ok_or_else(|| ClientError::Protocol("no session to refresh".into()))?;
        for requests in 1..=2 {
            let proof = match self.challenge.take() {
                Some(challenge) => Some(self.refresh_proof(&challenge)?),
                None => None,
            };
            let response = self.post_refresh(&session_id, proof.as_deref()).await?;
            self.remember_challenge(&response);
            if response.status() == StatusCode::FORBIDDEN && self.challenge.is_some() {
                continue;
            }
            let instructions = self.accept_instructions(response).await?;
            if !instructions.continue_ {
                return Ok(RefreshOutcome::Terminated);
            }
            return Ok(RefreshOutcome::Renewed { requests });
        }
        Err(ClientError::Protocol(
            "server rejected the response to its own challenge".into(),
        ))
    }

    /// GETs a path with the session cookie.
    pub async fn get(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        Ok(self
            .http
            .get(self.url(path))
            .header(COOKIE, self.cookie_header())
            .send()
            .await?)
    }

    /// POSTs an empty form to a path with the session cookie, like a page's button.
    pub async fn post(&mut self, path: &str) -> Result<reqwest::Response, ClientError> {
        let response = self
            .http
            .post(self.url(path))
            .header(COOKIE, self.cookie_header())
            .form(&[("", "")])
            .send()
            .await?;
        self.remember_cookies(&response);
        Ok(response)
    }

    /// Builds the `Cookie` header this client sends.
    pub fn cookie_header(&self) -> String {
        let mut pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        pairs.sort();
        pairs.join("; ")
    }

    /// Replaces a cookie, as a thief who copied it would.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    async fn accept_instructions(
        &mut self,
        response: reqwest::Response,
    ) -> Result<SessionInstructions, ClientError> {
        let status = response.status();
        self.remember_cookies(&response);
        self.remember_challenge(&response);
        let body = response.text().await?;
        if status != StatusCode::OK {
            return Err(ClientError::Status { status, body });
        }
        let instructions: SessionInstructions = serde_json::from_str(&body)
            .map_err(|error| ClientError::Protocol(format!("instructions: {error}")))?;
        if let Some(current) = &self.session_id {
            if *current != instructions.session_identifier {
                return Err(ClientError::Protocol("session_identifier changed".into()));
            }
        }
        self.session_id = Some(instructions.session_identifier.clone());
        Ok(instructions)
    }

    fn remember_challenge(&mut self, response: &reqwest::Response) {
        let Some(value) = response.headers().get(headers::CHALLENGE) else {
            return;
        };
        if let Ok(challenges) = headers::parse_challenges(value.as_bytes()) {
            let session_id = self.session_id.as_deref();
            if let Some((challenge, _)) = challenges
                .into_iter()
                .find(|(_, id)| session_id.is_none() || id.as_deref() == session_id)
            {
                self.challenge = Some(challenge);
            }
        }
    }

    fn remember_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let Ok(cookie) = cookie::Cookie::parse(text.to_owned()) else {
                continue;
            };
            if cookie.max_age().is_some_and(|age| age.is_zero()) || cookie.value().is_empty() {
                self.cookies.remove(cookie.name());
            } else {
                if let Some(age) = cookie.max_age() {
                    self.cookie_max_age = u64::try_from(age.whole_seconds()).ok();
                }
                self.cookies
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }
}
