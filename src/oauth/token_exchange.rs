//! Token exchange (RFC 8693): an agent trades a token for a narrower, DPoP-bound one.
//!
//! The actor is the agent whose key made the DPoP proof: the holder of the `actor_token` if
//! one is sent, otherwise the holder of the subject token. A subject token held by another
//! agent may only be exchanged by the agent its `may_act` names.

use rand::{CryptoRng, RngCore};

use super::gate::{self, ActorFacts};
use super::{ACCESS_TOKEN_TTL, KeyRing, OAuthError, Settings, access_token, dpop::DpopProof};
use super::{TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT};
use crate::clock::UnixTime;
use crate::store::{
    AccessTokenClaims, Actor, Confirmation, MayAct, Store, TokenLineage, TokenRecord,
};

/// A token exchange request (RFC 8693 §2.1), parameters already split from the form.
#[derive(Debug, Default)]
pub struct ExchangeRequest {
    pub subject_token: String,
    pub subject_token_type: String,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    /// Every `resource` and `audience` value, in request order.
    pub audiences: Vec<String>,
    pub scope: Option<String>,
    /// devbound extension: the agent id the issued token's `may_act` names, so that it can
    /// hand the token to that sub-agent.
    pub may_act: Option<String>,
}

/// The store, signing keys and settings that issuing a token needs.
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    pub store: &'a dyn Store,
    pub keys: &'a KeyRing,
    pub settings: &'a Settings,
}

/// An issued token and what the response reports about it (RFC 8693 §2.2.1).
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    /// Whether the issued scope differs from the request, so the response must name it.
    pub scope_changed: bool,
    pub claims: AccessTokenClaims,
}

/// Runs the exchange for a verified and spent DPoP `proof`.
pub fn exchange(
    issuer: Issuer<'_>,
    request: &ExchangeRequest,
    proof: &DpopProof,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Issued, OAuthError> {
    check_token_types(request)?;
    let store = issuer.store;

    let subject = access_token::find_issued(store, &request.subject_token)?;
    let actor_token = match &request.actor_token {
        Some(token) => {
            let actor = access_token::find_issued(store, token)?;
            gate::check_token(store, &actor, now)?;
            Some(actor)
        }
        None => None,
    };
    let actor = actor_token.as_ref().unwrap_or(&subject);
    let actor_is_holder = actor.claims.client_id == subject.claims.client_id;
    gate::check_subject_token(store, &subject, actor_is_holder, now)?;
    // RFC 9449 §5: the proof key is the key the actor's token is bound to.
    if actor.claims.cnf.jkt != proof.jkt {
        return Err(OAuthError::DpopKeyMismatch);
    }
    let actor_id = actor.claims.client_id.clone();
    check_may_act(&subject, &actor_id)?;

    let session_id = actor
        .lineage
        .sessions
        .last()
        .ok_or(OAuthError::SessionNotBound)?;
    let facts = ActorFacts::load(store, &actor_id, session_id)?;
    gate::check_actor(&facts, &proof.jkt, now, issuer.settings.proof_window)?;
    if facts.agent.owner_id != subject.claims.sub {
        return Err(OAuthError::NotOwner);
    }

    let (scope, scope_changed) = narrow_scope(&subject, &facts, request.scope.as_deref())?;
    let audience = narrow_audience(issuer.settings, &subject, &facts, &request.audiences)?;
    let may_act = match &request.may_act {
        Some(agent_id) => Some(check_delegate(store, &facts, agent_id)?),
        None => None,
    };

    let claims = AccessTokenClaims {
        iss: issuer.settings.issuer.clone(),
        sub: subject.claims.sub.clone(),
        aud: audience,
        exp: (now + ACCESS_TOKEN_TTL).min(subject.claims.exp),
        iat: now,
        jti: access_token::new_jti(now, rng),
        client_id: actor_id.clone(),
        scope: scope.join(" "),
        act: Some(next_actor(&subject.claims, &actor_id)),
        may_act,
        cnf: Confirmation {
            jkt: proof.jkt.clone(),
        },
        acr: facts
            .session
            .as_ref()
            .map_or("software", |session| session.assurance.name())
            .to_owned(),
    };
    let device_id = facts
        .session
        .as_ref()
        .and_then(|session| session.device_id.as_deref());
    let lineage = extend_lineage(&subject, &actor_id, session_id, device_id);
    let access_token = access_token::issue(store, issuer.keys, claims.clone(), lineage)?;
    Ok(Issued {
        access_token,
        expires_in: claims.exp.saturating_sub(now),
        scope: claims.scope.clone(),
        scope_changed,
        claims,
    })
}

/// RFC 8693 §2.1: only access tokens (which devbound issues as JWTs) are accepted, and an
/// actor token needs its type. Refresh and ID tokens are not access tokens.
fn check_token_types(request: &ExchangeRequest) -> Result<(), OAuthError> {
    let accepted = |kind: &str| kind == TOKEN_TYPE_ACCESS_TOKEN || kind == TOKEN_TYPE_JWT;
    if !accepted(&request.subject_token_type) {
        return Err(OAuthError::UnsupportedTokenType(
            request.subject_token_type.clone(),
        ));
    }
    match (&request.actor_token, &request.actor_token_type) {
        (Some(_), Some(kind)) if !accepted(kind) => {
            return Err(OAuthError::UnsupportedTokenType(kind.clone()));
        }
        (Some(_), None) => return Err(OAuthError::Malformed("actor_token_type is missing")),
        (None, Some(_)) => return Err(OAuthError::Malformed("actor_token_type without token")),
        _ => {}
    }
    match request.requested_token_type.as_deref() {
        None | Some(TOKEN_TYPE_ACCESS_TOKEN) => Ok(()),
        Some(other) => Err(OAuthError::UnsupportedTokenType(other.to_owned())),
    }
}

/// RFC 8693 §4.4: when the subject token names who may act for it, the actor must be that
/// party, whether or not an actor token was sent. Without `may_act`, only the agent the
/// subject token was issued to may exchange it.
fn check_may_act(subject: &TokenRecord, actor_id: &str) -> Result<(), OAuthError> {
    match &subject.claims.may_act {
        Some(may_act) if may_act.sub == actor_id => Ok(()),
        Some(_) => Err(OAuthError::MayActMismatch),
        None if subject.claims.client_id == actor_id => Ok(()),
        None => Err(OAuthError::ActorNotPermitted),
    }
}

/// Builds the new `act` claim (RFC 8693 §4.1). An agent re-exchanging its own token keeps the
/// chain unchanged, and a different agent becomes the new outermost actor over the old chain.
fn next_actor(subject: &AccessTokenClaims, actor_id: &str) -> Actor {
    let previous = subject.act.clone().unwrap_or_else(|| Actor {
        sub: subject.client_id.clone(),
        act: None,
    });
    if actor_id == subject.client_id {
        return previous;
    }
    Actor {
        sub: actor_id.to_owned(),
        act: Some(Box::new(previous)),
    }
}

/// Scope only narrows: every requested scope token must be in the subject token's scope and
/// in the actor's registry entry; a request for more is `invalid_scope`, never silently
/// narrowed. With no `scope`, the result is the subject's scope within the registry entry.
fn narrow_scope(
    subject: &TokenRecord,
    facts: &ActorFacts,
    requested: Option<&str>,
) -> Result<(Vec<String>, bool), OAuthError> {
    let allowed = |token: &str| {
        subject.claims.scope.split(' ').any(|held| held == token)
            && facts.agent.scopes.iter().any(|entry| entry == token)
    };
    let Some(requested) = requested else {
        let scope: Vec<String> = subject
            .claims
            .scope
            .split(' ')
            .filter(|token| !token.is_empty() && allowed(token))
            .map(str::to_owned)
            .collect();
        if scope.is_empty() {
            return Err(OAuthError::NoScope);
        }
        return Ok((scope, true));
    };
    let mut scope: Vec<String> = Vec::new();
    for token in requested.split(' ').filter(|token| !token.is_empty()) {
        if !allowed(token) {
            return Err(OAuthError::ScopeWidened(token.to_owned()));
        }
        if !scope.iter().any(|kept| kept == token) {
            scope.push(token.to_owned());
        }
    }
    if scope.is_empty() {
        return Err(OAuthError::NoScope);
    }
    Ok((scope, false))
}

/// Audience only narrows. A token whose audience is devbound itself (what the device grant
/// issues) may reach any audience in the actor's registry entry; any other token may reach
/// only its own audiences that the entry also lists. With no audience requested, the result
/// is every audience allowed.
fn narrow_audience(
    settings: &Settings,
    subject: &TokenRecord,
    facts: &ActorFacts,
    requested: &[String],
) -> Result<Vec<String>, OAuthError> {
    let issuer = normalize_resource(&settings.issuer);
    let grant_token = subject
        .claims
        .aud
        .iter()
        .all(|aud| Some(aud) == issuer.as_ref());
    let allowed: Vec<&String> = facts
        .agent
        .audiences
        .iter()
        .filter(|entry| grant_token || subject.claims.aud.contains(entry))
        .collect();

    if requested.is_empty() {
        let audience: Vec<String> = allowed.into_iter().cloned().collect();
        if audience.is_empty() {
            return Err(OAuthError::NoAudience);
        }
        return Ok(audience);
    }
    let mut audience: Vec<String> = Vec::new();
    for value in requested {
        let normalized =
            normalize_resource(value).ok_or_else(|| OAuthError::InvalidResource(value.clone()))?;
        if !allowed.contains(&&normalized) {
            return Err(OAuthError::AudienceWidened(value.clone()));
        }
        if !audience.contains(&normalized) {
            audience.push(normalized);
        }
    }
    Ok(audience)
}

/// The agent a `may_act` names must be active and belong to the same owner.
fn check_delegate(
    store: &dyn Store,
    facts: &ActorFacts,
    agent_id: &str,
) -> Result<MayAct, OAuthError> {
    let delegate = store
        .find_agent(agent_id)?
        .filter(|agent| agent.owner_id == facts.agent.owner_id)
        .ok_or(OAuthError::UnknownAgent)?;
    gate::check_agent(&delegate)?;
    Ok(MayAct { sub: delegate.id })
}

fn extend_lineage(
    subject: &TokenRecord,
    actor_id: &str,
    session_id: &str,
    device_id: Option<&str>,
) -> TokenLineage {
    let mut lineage = subject.lineage.clone();
    if let Some(device_id) = device_id {
        if !lineage.devices.iter().any(|known| known == device_id) {
            lineage.devices.push(device_id.to_owned());
        }
    }
    if lineage.agents.last().map(String::as_str) != Some(actor_id) {
        lineage.agents.push(actor_id.to_owned());
    }
    if lineage.sessions.last().map(String::as_str) != Some(session_id) {
        lineage.sessions.push(session_id.to_owned());
    }
    lineage.ancestors.push(subject.claims.jti.clone());
    lineage
}

/// Normalises a resource identifier for comparison. The rule: an absolute `https` URI
/// without fragment or user information; scheme and host compare case-insensitively, the
/// default port is dropped, and an empty path equals `/` (RFC 3986 §6.2.3). Any other
/// trailing slash is significant: `https://a.example/x` and `https://a.example/x/` differ.
pub fn normalize_resource(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    let acceptable = url.scheme() == "https"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str().is_some();
    acceptable.then(|| url.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_rule_equates_only_empty_path_and_slash() {
        let bare = normalize_resource("https://API-A.example");
        assert_eq!(bare.as_deref(), Some("https://api-a.example/"));
        assert_eq!(normalize_resource("https://api-a.example/"), bare);
        assert_eq!(normalize_resource("https://api-a.example:443/"), bare);
        assert_ne!(
            normalize_resource("https://api-a.example/x/"),
            normalize_resource("https://api-a.example/x")
        );
        assert_eq!(normalize_resource("http://api-a.example"), None);
        assert_eq!(normalize_resource("https://api-a.example/#f"), None);
        assert_eq!(normalize_resource("api-a.example"), None);
    }

    #[test]
    fn next_actor_nests_a_new_actor_and_keeps_a_repeated_one() {
        let grant = AccessTokenClaims {
            iss: "https://d".into(),
            sub: "user".into(),
            aud: vec![],
            exp: 10,
            iat: 0,
            jti: "j".into(),
            client_id: "a".into(),
            scope: String::new(),
            act: None,
            may_act: None,
            cnf: Confirmation { jkt: "k".into() },
            acr: "software".into(),
        };
        let first = next_actor(&grant, "a");
        assert_eq!(first.chain(), vec!["a"]);

        let hop = AccessTokenClaims {
            act: Some(first),
            ..grant
        };
        assert_eq!(next_actor(&hop, "a").chain(), vec!["a"]);
        let second = next_actor(&hop, "b");
        assert_eq!(second.chain(), vec!["b", "a"]);

        let handed = AccessTokenClaims {
            client_id: "b".into(),
            act: Some(second),
            ..hop
        };
        assert_eq!(next_actor(&handed, "b").chain(), vec!["b", "a"]);
    }
}
