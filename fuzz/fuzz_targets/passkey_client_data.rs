//! Fuzzes `client_data::check` with arbitrary `clientDataJSON` bytes.
//!
//! Every accepted input must be a JSON object whose `type`, `origin` and decoded `challenge`
//! are the expected ones, and whose embedding is same-origin or from the listed embedder. The
//! same bytes must be rejected for the other ceremony type and for another origin.

#![no_main]

use devbound::crypto::base64url;
use devbound::passkey::client_data::{self, Expected, TYPE_CREATE, TYPE_GET};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CHALLENGE: &str = "8_-Yb4nQ0x_Ks-vPz2e3Rw";
const ORIGIN: &str = "https://login.example.com";
const EMBEDDER: &str = "https://portal.example.com";

fuzz_target!(|data: &[u8]| {
    let embedders = [EMBEDDER.to_owned()];
    let expected = Expected {
        type_: TYPE_GET,
        challenge: CHALLENGE,
        origin: ORIGIN,
        embedding_origins: &embedders,
    };
    if client_data::check(data, &expected).is_err() {
        return;
    }

    let value: Value = serde_json::from_slice(data).expect("accepted client data is JSON");
    let member = |name: &str| value.get(name).and_then(Value::as_str);
    assert_eq!(member("type"), Some(TYPE_GET));
    assert_eq!(member("origin"), Some(ORIGIN));
    let challenge = member("challenge").expect("accepted client data has a challenge");
    assert_eq!(
        base64url::decode(challenge).ok(),
        base64url::decode(CHALLENGE).ok()
    );
    if value.get("crossOrigin") == Some(&Value::Bool(true)) {
        assert_eq!(member("topOrigin"), Some(EMBEDDER));
    }

    let create = Expected {
        type_: TYPE_CREATE,
        ..expected
    };
    assert!(client_data::check(data, &create).is_err());
    let elsewhere = Expected {
        origin: "https://login.example.org",
        ..expected
    };
    assert!(client_data::check(data, &elsewhere).is_err());
});
