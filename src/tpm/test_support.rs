//! Fixtures and certificate builders for the TPM tests.

use std::collections::HashMap;
use std::path::PathBuf;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;

use super::der::{BIT_STRING, INTEGER, OBJECT_IDENTIFIER, SEQUENCE, bit_string, sequence, tlv};
use super::ek_certificate::TrustStore;
use crate::clock::UnixTime;

/// 2027-01-15, inside the validity of every fixture certificate (captured in December 2026,
/// valid until 9999).
pub const NOW: UnixTime = 1_800_000_000;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tpm")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Reads `name = hex` lines, skipping blank lines and `#` comments.
pub fn hex_fixture(name: &str) -> HashMap<String, Vec<u8>> {
    let text = String::from_utf8(fixture(name)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.trim().to_owned(), hex::decode(value.trim()).unwrap())
        })
        .collect()
}

/// The swtpm local CA: its root and the intermediate that signed the fixture EK certificates.
pub fn swtpm_trust_store() -> TrustStore {
    TrustStore::load_dir(&fixture_path("trust")).unwrap()
}

/// Splits a DER element's content into its top-level elements, each with tag and length.
pub fn elements(content: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (header, len) = match rest[1] {
            short if short < 0x80 => (2, usize::from(short)),
            0x81 => (3, usize::from(rest[2])),
            0x82 => (4, usize::from(u16::from_be_bytes([rest[2], rest[3]]))),
            other => panic!("unexpected length byte {other:#x}"),
        };
        let (element, tail) = rest.split_at(header + len);
        out.push(element);
        rest = tail;
    }
    out
}

/// Returns the content octets of one DER element.
pub fn content(element: &[u8]) -> &[u8] {
    let header = match element[1] {
        short if short < 0x80 => 2,
        long => 2 + usize::from(long & 0x7f),
    };
    &element[header..]
}

/// Replaces the serial number of a real EK certificate with `serial` (INTEGER content octets)
/// and signs the edited TBS again with the swtpm local CA's key.
pub fn swtpm_ek_certificate_with_serial(serial: &[u8]) -> Vec<u8> {
    let certificate = fixture("swtpm-ek-rsa.der");
    let parts = elements(content(&certificate));
    let (tbs, algorithm) = (parts[0], parts[1]);
    let mut fields: Vec<Vec<u8>> = elements(content(tbs)).iter().map(|f| f.to_vec()).collect();
    assert_eq!(fields[1][0], INTEGER, "serial number follows the version");
    fields[1] = tlv(INTEGER, serial);
    let tbs = tlv(SEQUENCE, &fields.concat());
    sign_rsa(&tbs, algorithm)
}

fn sign_rsa(tbs: &[u8], algorithm: &[u8]) -> Vec<u8> {
    let pem = String::from_utf8(fixture("swtpm-localca-issuer-key.pem")).unwrap();
    let body = pem
        .split("-----BEGIN RSA PRIVATE KEY-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END RSA PRIVATE KEY-----").next())
        .unwrap();
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let pkcs1 = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let key = RsaKeyPair::from_der(&pkcs1).unwrap();
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), tbs, &mut signature)
        .unwrap();
    sequence(&[tbs, algorithm, &bit_string(&signature)])
}

/// DER content octets of the OIDs the test certificates use.
pub mod oid {
    pub const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
}

/// Encodes a Name of one RDN with every `(type, value)` attribute. Its SET OF is in DER order
/// when `der_order` is true and in reverse order otherwise.
pub fn multi_valued_name(attributes: &[(&[u8], &str)], der_order: bool) -> Vec<u8> {
    let mut encoded: Vec<Vec<u8>> = attributes
        .iter()
        .map(|(kind, value)| {
            sequence(&[&tlv(OBJECT_IDENTIFIER, kind), &tlv(0x0c, value.as_bytes())])
        })
        .collect();
    encoded.sort();
    if !der_order {
        encoded.reverse();
    }
    let set = tlv(0x31, &encoded.concat());
    sequence(&[&set])
}

/// A P-256 certificate authority built from scratch, for encodings swtpm never produces.
pub struct TestCa {
    key: EcdsaKeyPair,
    pub name: Vec<u8>,
    pub certificate: Vec<u8>,
}

impl TestCa {
    pub fn new(name: Vec<u8>) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let spki = sequence(&[
            &sequence(&[
                &tlv(OBJECT_IDENTIFIER, oid::EC_PUBLIC_KEY),
                &tlv(OBJECT_IDENTIFIER, oid::P256),
            ]),
            &bit_string(key.public_key().as_ref()),
        ]);
        let basic_constraints = sequence(&[
            &tlv(OBJECT_IDENTIFIER, oid::BASIC_CONSTRAINTS),
            &tlv(0x01, &[0xff]),
            &tlv(0x04, &sequence(&[&tlv(0x01, &[0xff])])),
        ]);
        let extensions = tlv(0xa3, &sequence(&[&basic_constraints]));
        let mut ca = Self {
            key,
            name: name.clone(),
            certificate: Vec::new(),
        };
        ca.certificate = ca.issue(&[1], &name, &name, &spki, &extensions);
        ca
    }

    /// Issues a v3 certificate valid from 2026-01-01 to 9999 with `issuer` written as given.
    pub fn issue(
        &self,
        serial: &[u8],
        issuer: &[u8],
        subject: &[u8],
        spki: &[u8],
        extensions: &[u8],
    ) -> Vec<u8> {
        let algorithm = sequence(&[&tlv(OBJECT_IDENTIFIER, oid::ECDSA_WITH_SHA256)]);
        let validity = sequence(&[&tlv(0x17, b"260101000000Z"), &tlv(0x18, b"99991231235959Z")]);
        let tbs = sequence(&[
            &tlv(0xa0, &tlv(INTEGER, &[2])),
            &tlv(INTEGER, serial),
            &algorithm,
            issuer,
            &validity,
            subject,
            spki,
            extensions,
        ]);
        let signature = self.key.sign(&SystemRandom::new(), &tbs).unwrap();
        sequence(&[&tbs, &algorithm, &bit_string(signature.as_ref())])
    }

    pub fn trust_store(&self) -> TrustStore {
        let mut store = TrustStore::default();
        store.add_der(self.certificate.clone()).unwrap();
        store
    }
}

/// The SubjectPublicKeyInfo of the fixture EK, as an EK certificate carries it.
pub fn swtpm_ek_spki() -> Vec<u8> {
    let certificate = fixture("swtpm-ek-rsa.der");
    let tbs = elements(content(&certificate))[0];
    let spki = elements(content(tbs))[6];
    assert_eq!(spki[0], SEQUENCE);
    assert_eq!(elements(content(spki))[1][0], BIT_STRING);
    spki.to_vec()
}
