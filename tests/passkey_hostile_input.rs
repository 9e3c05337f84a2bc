//! The passkey parsers of peer input with hostile bytes: random data, truncations and bit flips
//! of valid messages. Every input is rejected or accepted without a panic, and no altered
//! signed message verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use devbound::crypto::base64url;
use devbound::passkey::authenticator_data::AuthenticatorFlags;
use devbound::passkey::client_data::{self, Expected};
use devbound::passkey::tpm_attestation;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_cbor_2::Value as Cbor;
use support::webauthn::{Attestation, SoftAuthenticator, TestCa, TpmAttributes, sha256};

const ORIGIN: &str = "https://login.example.com";
const ROUNDS: usize = 2_000;

fn random_bytes(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.gen_range(0..=max_len)];
    rng.fill_bytes(&mut bytes);
    bytes
}

#[test]
fn client_data_survives_random_bytes() {
    let mut rng = StdRng::seed_from_u64(1);
    let expected = Expected {
        type_: client_data::TYPE_GET,
        challenge: "8_-Yb4nQ0x_Ks-vPz2e3Rw",
        origin: ORIGIN,
        embedding_origins: &[],
    };
    let valid = std::fs::read("fixtures/passkey/client-data/chrome-same-origin.json").unwrap();
    assert_eq!(client_data::check(&valid, &expected), Ok(()));
    for _ in 0..ROUNDS {
        assert!(client_data::check(&random_bytes(&mut rng, 300), &expected).is_err());
        let mut flipped = valid.clone();
        let index = rng.gen_range(0..flipped.len());
        flipped[index] ^= 1 << rng.gen_range(0..8);
        // A flipped bit may still be valid JSON with the same values (white space); it must
        // never panic.
        let _ = client_data::check(&flipped, &expected);
    }
}

#[test]
fn authenticator_flags_survive_any_length() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..ROUNDS {
        let bytes = random_bytes(&mut rng, 80);
        let parsed = AuthenticatorFlags::parse(&bytes);
        if bytes.len() < 37 {
            assert!(parsed.is_err());
        }
    }
}

/// A valid `tpm` statement with the inputs its verification needs.
struct TpmCase {
    statement: BTreeMap<Cbor, Cbor>,
    auth_data: Vec<u8>,
    client_data_hash: [u8; 32],
    key: tpm_attestation::CredentialKey,
    aaguid: [u8; 16],
}

fn tpm_case() -> TpmCase {
    let ca = TestCa::new("AIK Root");
    let (aik, key) = ca.aik_leaf(&TpmAttributes::new("id:4D534654", false));
    let authenticator = SoftAuthenticator::new(ORIGIN, [3; 16]);
    let client_data = authenticator.client_data("webauthn.create", "Y2hhbGxlbmdl");
    let auth_data = authenticator.auth_data("login.example.com", 0x05, 0, true);
    let attestation = Attestation::Tpm {
        aik,
        key,
        ecc_unique_with_length: false,
    };
    let response = authenticator.registration_response(&client_data, &auth_data, &attestation);
    let object = base64url::decode(response["response"]["attestationObject"].as_str().unwrap());
    let Cbor::Map(object) = serde_cbor_2::from_slice(&object.unwrap()).unwrap() else {
        panic!("attestation object is not a map");
    };
    let Some(Cbor::Map(statement)) = object.get(&Cbor::Text("attStmt".into())).cloned() else {
        panic!("no attStmt");
    };
    let id_len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    let key = tpm_attestation::credential_key(&auth_data[55 + id_len..]).unwrap();
    TpmCase {
        statement,
        auth_data,
        client_data_hash: sha256(&client_data),
        key,
        aaguid: [3; 16],
    }
}

impl TpmCase {
    fn verify(&self, statement: BTreeMap<Cbor, Cbor>) -> bool {
        tpm_attestation::verify(
            &Cbor::Map(statement),
            &self.auth_data,
            &self.client_data_hash,
            &self.key,
            &self.aaguid,
        )
        .is_ok()
    }
}

#[test]
fn tpm_statement_rejects_every_flipped_bit() {
    let case = tpm_case();
    assert!(
        case.verify(case.statement.clone()),
        "the valid statement must verify"
    );
    let mut rng = StdRng::seed_from_u64(3);
    for round in 0..ROUNDS {
        let member = ["pubArea", "certInfo", "sig"][round % 3];
        let mut statement = case.statement.clone();
        let Some(Cbor::Bytes(bytes)) = statement.get_mut(&Cbor::Text(member.into())) else {
            panic!("{member} missing");
        };
        let index = rng.gen_range(0..bytes.len());
        bytes[index] ^= 1 << rng.gen_range(0..8);
        assert!(
            !case.verify(statement),
            "{member} with byte {index} flipped verified"
        );
    }
}

#[test]
fn tpm_statement_rejects_truncations_and_random_members() {
    let case = tpm_case();
    let mut rng = StdRng::seed_from_u64(4);
    for member in ["pubArea", "certInfo", "sig", "x5c"] {
        let Some(original) = case.statement.get(&Cbor::Text(member.into())).cloned() else {
            panic!("{member} missing");
        };
        let bytes = match &original {
            Cbor::Bytes(bytes) => bytes.clone(),
            Cbor::Array(items) => match &items[0] {
                Cbor::Bytes(bytes) => bytes.clone(),
                _ => panic!("x5c item is not bytes"),
            },
            _ => panic!("{member} has an unexpected type"),
        };
        for cut in 0..bytes.len() {
            let mut statement = case.statement.clone();
            let truncated = Cbor::Bytes(bytes[..cut].to_vec());
            let value = match member {
                "x5c" => Cbor::Array(vec![truncated]),
                _ => truncated,
            };
            statement.insert(Cbor::Text(member.into()), value);
            assert!(!case.verify(statement), "{member} cut at {cut} verified");
        }
        for _ in 0..200 {
            let mut statement = case.statement.clone();
            statement.insert(
                Cbor::Text(member.into()),
                Cbor::Bytes(random_bytes(&mut rng, 400)),
            );
            assert!(!case.verify(statement));
        }
    }
}

#[test]
fn registration_rejects_random_attestation_objects() {
    use devbound::passkey::{PasskeySettings, RelyingParty};
    use devbound::store::UserRecord;
    use webauthn_rs_core::proto::RegisterPublicKeyCredential;

    let rp = RelyingParty::new(PasskeySettings::default(), ORIGIN).unwrap();
    let user = UserRecord {
        id: "dXNlcg".into(),
        name: "alice".into(),
        password_hash: String::new(),
        created_at: 0,
        disabled_at: None,
    };
    let authenticator = SoftAuthenticator::new(ORIGIN, [3; 16]);
    let mut rng = StdRng::seed_from_u64(5);
    for round in 0..200 {
        let started = rp
            .start_registration(&user, "key", &[], 0, &mut rand::thread_rng())
            .unwrap();
        let options = serde_json::to_value(&started.options).unwrap();
        let mut response = authenticator.register(&options, &Attestation::None);
        let mut object =
            base64url::decode(response["response"]["attestationObject"].as_str().unwrap()).unwrap();
        if round % 2 == 0 {
            object = random_bytes(&mut rng, 300);
        } else {
            object.truncate(rng.gen_range(0..object.len()));
        }
        response["response"]["attestationObject"] = base64url::encode(&object).into();
        let response: RegisterPublicKeyCredential = serde_json::from_value(response).unwrap();
        assert!(
            rp.finish_registration(&started.ceremony, &response, 0)
                .is_err(),
            "round {round} registered"
        );
    }
}
