//! Fuzzes `BoundCookie::find` on arbitrary `Cookie` header values.
//!
//! Input layout: a cookie name, a newline, and the header value. Without a newline, or when the
//! name is not a valid cookie name, the whole input is the header and the name is
//! `__Host-devbound`.

#![no_main]

use devbound::dbsc::{BoundCookie, SameSite};
use libfuzzer_sys::fuzz_target;

const DEFAULT_NAME: &str = "__Host-devbound";
/// A cookie name placed around the bound cookie in round-trip checks.
const NEIGHBOR_NAME: &str = "neighbor";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (cookie, header) = match text.split_once('\n') {
        Some((name, header)) => match BoundCookie::new(name, None, SameSite::Lax) {
            Ok(cookie) => (cookie, header),
            Err(_) => (default_cookie(), text),
        },
        None => (default_cookie(), text),
    };

    let Some(value) = cookie.find(header) else {
        return;
    };
    check_found(&cookie, header, value);
    check_round_trip(&cookie, value);
});

fn default_cookie() -> BoundCookie {
    BoundCookie::new(DEFAULT_NAME, None, SameSite::Lax).expect("default cookie name is valid")
}

/// Checks that the value is a trimmed slice of one `;`-separated pair in the header.
fn check_found(cookie: &BoundCookie, header: &str, value: &str) {
    let header_range = header.as_bytes().as_ptr_range();
    let value_range = value.as_bytes().as_ptr_range();
    assert!(
        header_range.start <= value_range.start && value_range.end <= header_range.end,
        "value is not a slice of the header"
    );
    assert!(
        !value.contains(';'),
        "value {value:?} spans two cookie pairs"
    );
    assert_eq!(value, value.trim(), "value keeps surrounding white space");
    assert!(
        header.contains(cookie.name()),
        "matched a header without the cookie name"
    );
}

/// Checks that the value, sent back the way a browser sends the cookie, is found again. A name
/// that differs only in case does not match, because cookie names are case-sensitive.
fn check_round_trip(cookie: &BoundCookie, value: &str) {
    let name = cookie.name();
    let alone = format!("{name}={value}");
    assert_eq!(cookie.find(&alone), Some(value), "{alone:?}");

    if name != NEIGHBOR_NAME {
        let among = format!("{NEIGHBOR_NAME}=1; {name}={value}; {NEIGHBOR_NAME}=2");
        assert_eq!(cookie.find(&among), Some(value), "{among:?}");
    }

    let swapped_case = name
        .chars()
        .map(|c| match c.is_ascii_lowercase() {
            true => c.to_ascii_uppercase(),
            false => c.to_ascii_lowercase(),
        })
        .collect::<String>();
    if swapped_case != name {
        assert_eq!(cookie.find(&format!("{swapped_case}={value}")), None);
    }
}
