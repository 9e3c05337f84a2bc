//! Authenticator and browser behaviour seen in the field, checked against devbound's Relying
//! Party: TPM attestation of ECC keys, AIK certificate attribute layouts, signature counters,
//! backup flags, client data variants and packed attestation certificate extensions.
//! Attestations are made at test time; client data variants are files in
//! `fixtures/passkey/client-data`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::passkey::authenticator_data::{
    AuthenticatorDataError, AuthenticatorFlags, CounterCheck, check_counter,
};
use devbound::passkey::client_data::{self, ClientDataError, Expected};
use devbound::passkey::tpm_san::{self, TpmSanError};
use devbound::passkey::{
    AttestationMode, PasskeyError, PasskeySettings, RelyingParty, TrustAnchors,
};
use devbound::store::{Assurance, AttestationTrust, PasskeyRecord, UserRecord};
use serde_json::Value;
use support::webauthn::{
    Attestation, BE, BS, SoftAuthenticator, TestCa, TpmAttributes, UP, UV, sha256,
};
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::RegisterPublicKeyCredential;

const NOW: u64 = 1_796_342_400;
const ORIGIN: &str = "https://login.example.com";
const MODEL: [u8; 16] = [0x7e, 0x57, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1];

fn user() -> UserRecord {
    UserRecord {
        id: "dXNlci1hbGljZQ".into(),
        name: "alice".into(),
        password_hash: String::new(),
        created_at: NOW,
        disabled_at: None,
    }
}

fn relying_party(trusted: Option<&TestCa>, rp_id: Option<&str>) -> RelyingParty {
    let mut settings = PasskeySettings {
        rp_id: rp_id.map(str::to_owned),
        ..PasskeySettings::default()
    };
    if let Some(ca) = trusted {
        let root = openssl::x509::X509::from_pem(ca.pem().as_bytes()).unwrap();
        let mut trust = TrustAnchors::default();
        trust.add_root(&root, &[]).unwrap();
        settings.trust = trust;
        settings.attestation = AttestationMode::Trusted;
    }
    RelyingParty::new(settings, ORIGIN).unwrap()
}

/// Runs a registration ceremony with `respond` building the browser's response.
fn register_with(
    rp: &RelyingParty,
    respond: impl FnOnce(&Value) -> Value,
) -> Result<PasskeyRecord, PasskeyError> {
    let started = rp
        .start_registration(&user(), "key", &[], NOW, &mut rand::thread_rng())
        .unwrap();
    let options = serde_json::to_value(&started.options).unwrap();
    let response: RegisterPublicKeyCredential = serde_json::from_value(respond(&options)).unwrap();
    rp.finish_registration(&started.ceremony, &response, NOW)
}

fn register(
    rp: &RelyingParty,
    key: &SoftAuthenticator,
    attestation: &Attestation,
) -> Result<PasskeyRecord, PasskeyError> {
    register_with(rp, |options| key.register(options, attestation))
}

fn tpm(ca: &TestCa, manufacturer: &str, single_rdn: bool, with_length: bool) -> Attestation {
    let (aik, key) = ca.aik_leaf(&TpmAttributes::new(manufacturer, single_rdn));
    Attestation::Tpm {
        aik,
        key,
        ecc_unique_with_length: with_length,
    }
}

// Windows Hello with an ECC key: `tpm` attestation whose pubArea `unique` is the bare
// TPMS_ECC_POINT.

#[test]
fn tpm_ecc_attestation_verifies() {
    let vendor = TestCa::new("Windows Hello Test AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let passkey = register(&rp, &key, &tpm(&vendor, "id:4D534654", false, false)).unwrap();

    assert_eq!(passkey.attestation_format, "tpm");
    assert!(matches!(passkey.trust, AttestationTrust::Trusted { .. }));
    assert_eq!(passkey.assurance, Assurance::Passkey);
}

#[test]
fn tpm_ecc_point_with_extra_length_is_rejected() {
    let vendor = TestCa::new("Windows Hello Test AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let result = register(&rp, &key, &tpm(&vendor, "id:4D534654", false, true));

    assert!(
        result.is_err(),
        "a pubArea that does not match the key was accepted"
    );
}

// TPM AIK certificates: manufacturer, model and version in one RDN or three, and the
// manufacturer id in either letter case.

#[test]
fn aik_attributes_in_one_or_three_rdns_are_read() {
    let ca = TestCa::new("AIK Root");
    for single_rdn in [true, false] {
        let (aik, _) = ca.aik_leaf(&TpmAttributes::new("id:4D534654", single_rdn));
        let device = tpm_san::check_aik_certificate(&aik).unwrap();
        assert_eq!(
            device.manufacturer, "Microsoft",
            "single_rdn = {single_rdn}"
        );
        assert_eq!(device.model, "NPCT75x");
        assert_eq!(device.version, "id:0007000C");
    }
}

#[test]
fn aik_manufacturer_hex_case_is_ignored() {
    let ca = TestCa::new("AIK Root");
    let (aik, _) = ca.aik_leaf(&TpmAttributes::new("id:4d534654", false));
    let device = tpm_san::check_aik_certificate(&aik).unwrap();
    assert_eq!(device.manufacturer_id, 0x4D53_4654);
}

#[test]
fn aik_unregistered_manufacturer_is_named() {
    let ca = TestCa::new("AIK Root");
    let (aik, _) = ca.aik_leaf(&TpmAttributes::new("id:DEADBEEF", false));

    let error = tpm_san::check_aik_certificate(&aik).unwrap_err();

    assert_eq!(
        error,
        TpmSanError::UnregisteredManufacturer("id:DEADBEEF".into())
    );
    assert!(error.to_string().contains("id:DEADBEEF"));
}

#[test]
fn aik_malformed_manufacturer_is_rejected() {
    let ca = TestCa::new("AIK Root");
    for text in ["4D534654", "id:4D5346", "id:4D53465G"] {
        let (aik, _) = ca.aik_leaf(&TpmAttributes::new(text, false));
        let error = tpm_san::check_aik_certificate(&aik).unwrap_err();
        assert_eq!(error, TpmSanError::MalformedManufacturer(text.into()));
    }
}

#[test]
fn tpm_registration_names_unregistered_manufacturer() {
    let vendor = TestCa::new("AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let error = register(&rp, &key, &tpm(&vendor, "id:DEADBEEF", false, false)).unwrap_err();

    assert!(error.to_string().contains("id:DEADBEEF"), "{error}");
    assert_eq!(error.code(), "not_approved");
}

#[test]
fn tpm_registration_accepts_single_rdn_attributes() {
    let vendor = TestCa::new("AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let passkey = register(&rp, &key, &tpm(&vendor, "id:4D534654", true, false)).unwrap();

    assert_eq!(passkey.assurance, Assurance::Passkey);
}

#[test]
fn tpm_registration_accepts_lower_case_manufacturer() {
    let vendor = TestCa::new("AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let passkey = register(&rp, &key, &tpm(&vendor, "id:4d534654", false, false)).unwrap();

    assert_eq!(passkey.assurance, Assurance::Passkey);
}

// Signature counters: synced passkeys send 0; a counter that does not advance is a possible
// clone (the policy's effect is tested over HTTPS in passkey_sessions.rs).

#[test]
fn counter_pairs_are_classified() {
    let cases = [
        ((0, 0), CounterCheck::NotCounting),
        ((0, 7), CounterCheck::Advanced),
        ((7, 8), CounterCheck::Advanced),
        ((7, 7), CounterCheck::PossibleClone),
        ((42, 0), CounterCheck::PossibleClone),
        ((42, 41), CounterCheck::PossibleClone),
    ];
    for ((stored, received), expected) in cases {
        assert_eq!(
            check_counter(stored, received),
            expected,
            "stored {stored}, received {received}"
        );
    }
}

// Backup flags: BS without BE is invalid.

#[test]
fn backup_state_without_eligibility_is_invalid() {
    let key = SoftAuthenticator::new(ORIGIN, MODEL);
    let data = key.auth_data("login.example.com", UP | UV | BS, 0, false);

    let error = AuthenticatorFlags::parse(&data).unwrap_err();

    assert_eq!(error, AuthenticatorDataError::BackupStateWithoutEligibility);
    let valid = key.auth_data("login.example.com", UP | UV | BE | BS, 0, false);
    assert!(AuthenticatorFlags::parse(&valid).unwrap().backup_state);
}

#[test]
fn registration_with_backup_state_without_eligibility_is_rejected() {
    let rp = relying_party(None, None);
    let mut key = SoftAuthenticator::new(ORIGIN, MODEL);
    key.extra_flags = BS;

    let result = register(&rp, &key, &Attestation::None);

    assert!(result.is_err());
}

// Client data: parsed, never template-matched; strict challenge encoding; cross-origin only
// from allowed embedders.

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("fixtures/passkey/client-data/{name}.json")).unwrap()
}

fn check_fixture(name: &str, embedders: &[String]) -> Result<(), ClientDataError> {
    client_data::check(
        &fixture(name),
        &Expected {
            type_: client_data::TYPE_GET,
            challenge: "8_-Yb4nQ0x_Ks-vPz2e3Rw",
            origin: ORIGIN,
            embedding_origins: embedders,
        },
    )
}

#[test]
fn client_data_extra_members_in_any_order_are_accepted() {
    assert_eq!(check_fixture("chrome-same-origin", &[]), Ok(()));
    assert_eq!(check_fixture("extra-members-any-order", &[]), Ok(()));
}

#[test]
fn client_data_cross_origin_needs_allowed_top_origin() {
    assert_eq!(
        check_fixture("cross-origin-foreign-top", &[]),
        Err(ClientDataError::CrossOriginNotAllowed(
            "https://evil.example".into()
        ))
    );
    assert!(check_fixture("cross-origin-no-top", &[]).is_err());
    let portal = vec!["https://portal.example.com".to_owned()];
    assert_eq!(check_fixture("cross-origin-allowed-top", &portal), Ok(()));
    assert!(check_fixture("cross-origin-foreign-top", &portal).is_err());
}

#[test]
fn client_data_challenge_must_be_unpadded_base64url() {
    assert_eq!(
        check_fixture("padded-challenge", &[]),
        Err(ClientDataError::ChallengeEncoding)
    );
    assert_eq!(
        check_fixture("standard-alphabet-challenge", &[]),
        Err(ClientDataError::ChallengeEncoding)
    );
}

#[test]
fn registration_accepts_extra_client_data_members() {
    let rp = relying_party(None, None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let result = register_with(&rp, |options| {
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = format!(
            r#"{{"origin":"{ORIGIN}","extra":{{"nested":[1,2]}},"challenge":"{challenge}","type":"webauthn.create"}}"#
        );
        let auth_data = key.auth_data("login.example.com", UP | UV, 0, true);
        key.registration_response(client_data.as_bytes(), &auth_data, &Attestation::None)
    });

    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn registration_rejects_padded_challenge() {
    let rp = relying_party(None, None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let result = register_with(&rp, |options| {
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = key.client_data("webauthn.create", &format!("{challenge}="));
        let auth_data = key.auth_data("login.example.com", UP | UV, 0, true);
        key.registration_response(&client_data, &auth_data, &Attestation::None)
    });

    assert!(matches!(
        result,
        Err(PasskeyError::ClientData(ClientDataError::ChallengeEncoding))
    ));
}

/// The RP ID may be a registrable suffix of the origin's host. Authenticator data carries the
/// hash of the RP ID, not of the origin's host.
#[test]
fn rp_id_hash_is_of_rp_id_not_origin_host() {
    let rp = relying_party(None, Some("example.com"));
    let key = SoftAuthenticator::new(ORIGIN, MODEL);
    let respond = |rp_id: &'static str| {
        let key = &key;
        move |options: &Value| {
            let challenge = options["publicKey"]["challenge"].as_str().unwrap();
            let client_data = key.client_data("webauthn.create", challenge);
            let auth_data = key.auth_data(rp_id, UP | UV, 0, true);
            key.registration_response(&client_data, &auth_data, &Attestation::None)
        }
    };

    assert!(register_with(&rp, respond("example.com")).is_ok());
    let wrong = register_with(&rp, respond("login.example.com"));
    assert!(matches!(
        wrong,
        Err(PasskeyError::Webauthn(WebauthnError::InvalidRPIDHash))
    ));
    assert_eq!(sha256(b"example.com").len(), 32);
}

// Packed attestation certificates: the AAGUID extension must match the authenticator data and
// must not be critical.

fn packed_with_extension(ca: &TestCa, aaguid: [u8; 16], critical: bool) -> Attestation {
    let (leaf, key) = ca.packed_leaf(Some((aaguid, critical)));
    Attestation::Packed {
        chain: vec![leaf],
        key,
    }
}

#[test]
fn packed_aaguid_extension_matching_is_accepted() {
    let vendor = TestCa::new("Vendor Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let passkey = register(&rp, &key, &packed_with_extension(&vendor, MODEL, false)).unwrap();

    assert_eq!(passkey.assurance, Assurance::Passkey);
}

#[test]
fn packed_aaguid_extension_mismatch_is_rejected() {
    let vendor = TestCa::new("Vendor Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);
    let other = [9u8; 16];

    let result = register(&rp, &key, &packed_with_extension(&vendor, other, false));

    assert!(matches!(
        result,
        Err(PasskeyError::Webauthn(
            WebauthnError::AttestationCertificateAAGUIDMismatch
        ))
    ));
}

#[test]
fn packed_aaguid_extension_marked_critical_is_rejected() {
    let vendor = TestCa::new("Vendor Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let result = register(&rp, &key, &packed_with_extension(&vendor, MODEL, true));

    assert!(
        matches!(
            result,
            Err(PasskeyError::Webauthn(
                WebauthnError::AttestationCertificateRequirementsNotMet
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn tpm_from_untrusted_aik_root_is_rejected() {
    let vendor = TestCa::new("Windows Hello Test AIK Root");
    let stranger = TestCa::new("Unknown AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);

    let error = register(&rp, &key, &tpm(&stranger, "id:4D534654", false, false)).unwrap_err();

    assert_eq!(error.code(), "not_approved", "{error}");
}

#[test]
fn tpm_signed_by_another_key_is_rejected() {
    let vendor = TestCa::new("Windows Hello Test AIK Root");
    let rp = relying_party(Some(&vendor), None);
    let key = SoftAuthenticator::new(ORIGIN, MODEL);
    let (aik, _) = vendor.aik_leaf(&TpmAttributes::new("id:4D534654", false));
    let (_, other_key) = vendor.aik_leaf(&TpmAttributes::new("id:4D534654", false));
    let forged = Attestation::Tpm {
        aik,
        key: other_key,
        ecc_unique_with_length: false,
    };

    let error = register(&rp, &key, &forged).unwrap_err();

    assert!(error.to_string().contains("signature"), "{error}");
}

// Android Key Attestation: the key must be generated in the keystore (not imported) and be a
// signing key.

fn register_android(origin: u8, purpose: u8) -> Result<PasskeyRecord, PasskeyError> {
    let google = TestCa::new("Android Test Attestation Root");
    let rp = relying_party(None, None);
    let key = SoftAuthenticator::new(ORIGIN, [0; 16]);
    register_with(&rp, |options| {
        key.register_android_key(options, &google, origin, purpose)
    })
}

#[test]
fn android_key_generated_signing_key_is_accepted() {
    let passkey = register_android(0, 2).unwrap();
    assert_eq!(passkey.attestation_format, "android-key");
}

#[test]
fn android_key_imported_key_is_rejected() {
    assert!(register_android(2, 2).is_err());
}

#[test]
fn android_key_non_signing_key_is_rejected() {
    assert!(register_android(0, 0).is_err());
}
