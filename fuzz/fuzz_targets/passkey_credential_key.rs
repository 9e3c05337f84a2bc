//! Fuzzes `tpm_attestation::credential_key`, the COSE_Key reader, with arbitrary CBOR bytes.
//!
//! A key it returns must come from a CBOR map with the matching `kty` (2 with `crv` 1 for
//! P-256, 3 for RSA) and carry exactly the byte strings under the key's labels. RFC 9053
//! defines the labels of EC2 keys, and RFC 8230 those of RSA keys.

#![no_main]

use devbound::passkey::tpm_attestation::{CredentialKey, credential_key};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_cbor_2::Value as Cbor;

fuzz_target!(|data: &[u8]| {
    let Some(key) = credential_key(data) else {
        return;
    };

    let mut deserializer = serde_cbor_2::Deserializer::from_slice(data);
    let Ok(Cbor::Map(map)) = Cbor::deserialize(&mut deserializer) else {
        panic!("a key was read from input that is not a CBOR map");
    };
    let get = |label: i128| map.get(&Cbor::Integer(label));
    let bytes = |label: i128| match get(label) {
        Some(Cbor::Bytes(bytes)) => Some(bytes),
        _ => None,
    };
    match &key {
        CredentialKey::P256 { x, y } => {
            assert_eq!(get(1), Some(&Cbor::Integer(2)));
            assert_eq!(get(-1), Some(&Cbor::Integer(1)));
            assert_eq!(bytes(-2), Some(x));
            assert_eq!(bytes(-3), Some(y));
        }
        CredentialKey::Rsa { n, e } => {
            assert_eq!(get(1), Some(&Cbor::Integer(3)));
            assert_eq!(bytes(-1), Some(n));
            assert_eq!(bytes(-2), Some(e));
        }
    }
});
