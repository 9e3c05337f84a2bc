//! The bound cookie: one value from which both the `Set-Cookie` header and the session
//! instructions' `attributes` are written, so that the two cannot disagree.
//!
//! Prefix rules (RFC 6265bis §4.1.3, compared case-insensitively by browsers): a `__Host-`
//! cookie has `Secure`, `Path=/` and no `Domain`; a `__Secure-` cookie has `Secure`. Every
//! cookie built here has `Secure` and `Path=/`, so only `Domain` can break a rule, and
//! [`BoundCookie::new`] rejects that combination. `Partitioned` and `Max-Age` never appear in
//! `attributes`, because Chromium rejects a session whose attributes carry either.

/// A rejected cookie configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("cookie name {0:?} is empty or contains characters not allowed in a cookie name")]
    InvalidName(String),
    #[error("cookie domain {0:?} is not a valid host name")]
    InvalidDomain(String),
    #[error("a `__Host-` cookie cannot have a Domain attribute; drop the domain or the prefix")]
    HostPrefixWithDomain,
}

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
}

impl SameSite {
    fn name(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
        }
    }
}

/// The cookie a bound session's credential travels in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCookie {
    name: String,
    domain: Option<String>,
    same_site: SameSite,
}

impl BoundCookie {
    pub fn new(name: &str, domain: Option<&str>, same_site: SameSite) -> Result<Self, CookieError> {
        // RFC 6265 §4.1.1: a cookie name is an RFC 7230 token.
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
        if !valid_name {
            return Err(CookieError::InvalidName(name.to_owned()));
        }

        if let Some(domain) = domain {
            let valid_domain = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'));
            if !valid_domain {
                return Err(CookieError::InvalidDomain(domain.to_owned()));
            }
            if has_prefix(name, "__Host-") {
                return Err(CookieError::HostPrefixWithDomain);
            }
        }

        Ok(Self {
            name: name.to_owned(),
            domain: domain.map(str::to_owned),
            same_site,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Formats the attributes shared by `Set-Cookie` and the session instructions.
    pub fn attributes(&self) -> String {
        let mut attributes = String::from("Path=/");
        if let Some(domain) = &self.domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        attributes.push_str("; Secure; HttpOnly; SameSite=");
        attributes.push_str(self.same_site.name());
        attributes
    }

    /// Builds a `Set-Cookie` value that sets `value` for `max_age` seconds.
    pub fn set(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}; {}; Max-Age={max_age}",
            self.name,
            self.attributes()
        )
    }

    /// Builds a `Set-Cookie` value that deletes the cookie.
    pub fn clear(&self) -> String {
        self.set("", 0)
    }

    /// Finds this cookie's value in a request's `Cookie` header.
    pub fn find<'a>(&self, cookie_header: &'a str) -> Option<&'a str> {
        cookie_header
            .split(';')
            .filter_map(|pair| ::cookie::Cookie::parse(pair.trim()).ok())
            .find(|cookie| cookie.name() == self.name)
            .and_then(|cookie| cookie.value_raw())
    }
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cookie_golden_strings() {
        let cookie = BoundCookie::new("__Host-devbound", None, SameSite::Lax);
        let Ok(cookie) = cookie else {
            unreachable!("valid configuration was rejected: {cookie:?}");
        };
        assert_eq!(
            cookie.set("s.c", 600),
            "__Host-devbound=s.c; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
        );
        assert_eq!(
            cookie.attributes(),
            "Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            cookie.clear(),
            "__Host-devbound=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn secure_cookie_with_domain_golden_string() {
        let cookie = BoundCookie::new("__Secure-s", Some("example.com"), SameSite::Strict);
        assert_eq!(
            cookie.map(|c| c.set("v", 60)),
            Ok("__Secure-s=v; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Max-Age=60".into())
        );
    }

    #[test]
    fn host_prefix_rejects_domain_in_any_case() {
        for name in ["__Host-x", "__host-x", "__HOST-x"] {
            assert_eq!(
                BoundCookie::new(name, Some("example.com"), SameSite::Lax),
                Err(CookieError::HostPrefixWithDomain),
                "{name}"
            );
        }
    }

    #[test]
    fn new_rejects_invalid_names_and_domains() {
        for name in ["", "a b", "a;b", "a=b", "caf\u{e9}"] {
            assert!(
                BoundCookie::new(name, None, SameSite::Lax).is_err(),
                "{name:?}"
            );
        }
        assert!(BoundCookie::new("a", Some("x;y"), SameSite::Lax).is_err());
    }

    #[test]
    fn find_reads_only_the_named_cookie() {
        let Ok(cookie) = BoundCookie::new("__Host-devbound", None, SameSite::Lax) else {
            unreachable!();
        };
        let header = "other=1; __Host-devbound=abc.def; x=y";
        assert_eq!(cookie.find(header), Some("abc.def"));
        assert_eq!(cookie.find("__host-devbound=zzz"), None);
    }
}
