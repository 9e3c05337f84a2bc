//! A software WebAuthn authenticator and client, and attestation CAs made at test time, for
//! ceremonies a browser cannot produce: packed attestation from a test CA, `none`, an untrusted
//! CA, TPM attestation with chosen AIK certificate attributes, and hand-made client data.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::collections::BTreeMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use devbound::crypto::base64url;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair as CertKeyPair,
};
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Authenticator data flags (WebAuthn Level 3 §6.1).
pub const UP: u8 = 0x01;
pub const UV: u8 = 0x04;
pub const BE: u8 = 0x08;
pub const BS: u8 = 0x10;
pub const AT: u8 = 0x40;

/// OID 1.3.6.1.4.1.45724.1.1.4 (id-fido-gen-ce-aaguid).
const FIDO_AAGUID_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn sign(pkcs8: &[u8], message: &[u8]) -> Vec<u8> {
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8).unwrap();
    key.sign(&SystemRandom::new(), message)
        .unwrap()
        .as_ref()
        .to_vec()
}

fn new_p256_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// A root CA for attestation certificates, made for one test.
pub struct TestCa {
    pub certificate: rcgen::Certificate,
    key: CertKeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = CertKeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).unwrap();
        Self { certificate, key }
    }

    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// Writes the root to `dir/<file>` for `--passkey-trusted-ca-dir`.
    pub fn write_to(&self, dir: &std::path::Path, file: &str) {
        std::fs::write(dir.join(file), self.pem()).unwrap();
    }

    /// Issues a packed attestation certificate (WebAuthn §8.2.1) and returns it with its
    /// PKCS#8 key. `aaguid_extension` is the AAGUID to put in id-fido-gen-ce-aaguid and
    /// whether to mark it critical.
    pub fn packed_leaf(&self, aaguid_extension: Option<([u8; 16], bool)>) -> (Vec<u8>, Vec<u8>) {
        let pkcs8 = new_p256_pkcs8();
        let key = CertKeyPair::try_from(pkcs8.as_slice()).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test Keys");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "Authenticator Attestation");
        params
            .distinguished_name
            .push(DnType::CommonName, "Test Key Batch 1");
        params.is_ca = IsCa::ExplicitNoCa;
        if let Some((aaguid, critical)) = aaguid_extension {
            let mut extension =
                CustomExtension::from_oid_content(FIDO_AAGUID_OID, der(0x04, &aaguid));
            extension.set_criticality(critical);
            params.custom_extensions.push(extension);
        }
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap();
        (certificate.der().to_vec(), pkcs8)
    }

    /// Issues an Android Key Attestation certificate for the key in `pkcs8`, with a
    /// KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17) for `challenge`.
    pub fn android_key_leaf(
        &self,
        pkcs8: &[u8],
        challenge: &[u8],
        origin: u8,
        purpose: u8,
    ) -> Vec<u8> {
        let key = CertKeyPair::try_from(pkcs8).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Android Keystore Key");
        // AuthorizationList: purpose [1] SET OF INTEGER, origin [702] INTEGER.
        let purpose = der(0xa1, &der(0x31, &der(0x02, &[purpose])));
        let origin = der_high_tag(702, &der(0x02, &[origin]));
        let hardware = der(0x30, &[purpose, origin].concat());
        let description = der(
            0x30,
            &[
                der(0x02, &[3]),      // attestationVersion
                der(0x0a, &[1]),      // attestationSecurityLevel: TrustedEnvironment
                der(0x02, &[4]),      // keymasterVersion
                der(0x0a, &[1]),      // keymasterSecurityLevel: TrustedEnvironment
                der(0x04, challenge), // attestationChallenge
                der(0x04, &[]),       // uniqueId
                der(0x30, &[]),       // softwareEnforced
                hardware,             // teeEnforced
            ]
            .concat(),
        );
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17],
                description,
            ));
        params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap()
            .der()
            .to_vec()
    }

    /// Issues a TPM AIK certificate (WebAuthn §8.3.1): empty subject, the TPM device attributes
    /// in a critical subject alternative name, and the tcg-kp-AIKCertificate key purpose.
    pub fn aik_leaf(&self, attributes: &TpmAttributes) -> (Vec<u8>, Vec<u8>) {
        let pkcs8 = new_p256_pkcs8();
        let key = CertKeyPair::try_from(pkcs8.as_slice()).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(vec![2, 23, 133, 8, 3])];
        let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], attributes.san_der());
        san.set_criticality(true);
        params.custom_extensions.push(san);
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap();
        (certificate.der().to_vec(), pkcs8)
    }
}

/// TPM device attributes for an AIK certificate's subject alternative name.
pub struct TpmAttributes {
    pub manufacturer: String,
    pub model: String,
    pub version: String,
    /// One multi-valued RDN instead of three RDNs.
    pub single_rdn: bool,
}

impl TpmAttributes {
    pub fn new(manufacturer: &str, single_rdn: bool) -> Self {
        Self {
            manufacturer: manufacturer.to_owned(),
            model: "NPCT75x".to_owned(),
            version: "id:0007000C".to_owned(),
            single_rdn,
        }
    }

    /// GeneralNames { directoryName [4] Name } with TPMManufacturer, TPMModel, TPMVersion.
    fn san_der(&self) -> Vec<u8> {
        let attribute = |oid_last: u8, value: &str| {
            let oid = der(0x06, &[0x67, 0x81, 0x05, 0x02, oid_last]);
            der(0x30, &[oid, der(0x0c, value.as_bytes())].concat())
        };
        let attributes = [
            attribute(1, &self.manufacturer),
            attribute(2, &self.model),
            attribute(3, &self.version),
        ];
        let name = if self.single_rdn {
            der(0x30, &der(0x31, &attributes.concat()))
        } else {
            let rdns: Vec<u8> = attributes.iter().flat_map(|a| der(0x31, a)).collect();
            der(0x30, &rdns)
        };
        der(0x30, &der(0xa4, &name))
    }
}

/// Encodes a context-specific constructed element with a tag number above 30 (X.690 §8.1.2.4).
fn der_high_tag(number: u16, content: &[u8]) -> Vec<u8> {
    let mut encoded = vec![0xbf];
    if number >= 128 {
        encoded.push(0x80 | (number >> 7) as u8);
    }
    encoded.push((number & 0x7f) as u8);
    let body = der(0x00, content);
    encoded.extend_from_slice(&body[1..]);
    encoded
}

/// Encodes one DER element.
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// How an authenticator attests a new credential.
pub enum Attestation {
    None,
    /// Packed self attestation, signed by the credential key.
    PackedSelf,
    /// Packed with an attestation certificate chain (leaf first) and the leaf's PKCS#8 key.
    Packed {
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
    },
    /// TPM with an AIK certificate and its key; `ecc_unique_with_length` adds the extra
    /// length that some parsers expect in front of the ECC point.
    Tpm {
        aik: Vec<u8>,
        key: Vec<u8>,
        ecc_unique_with_length: bool,
    },
}

/// A software authenticator holding one ES256 credential.
pub struct SoftAuthenticator {
    pub rp_id: String,
    pub origin: String,
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    key: Vec<u8>,
    pub counter: u32,
    /// Flags added to every authenticator data, such as `BE | BS`.
    pub extra_flags: u8,
    pub user_handle: Option<Vec<u8>>,
}

impl SoftAuthenticator {
    pub fn new(origin: &str, aaguid: [u8; 16]) -> Self {
        let rp_id = url::Url::parse(origin)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        let mut credential_id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut credential_id).unwrap();
        Self {
            rp_id,
            origin: origin.to_owned(),
            aaguid,
            credential_id,
            key: new_p256_pkcs8(),
            counter: 0,
            extra_flags: 0,
            user_handle: None,
        }
    }

    pub fn credential_id_b64(&self) -> String {
        base64url::encode(&self.credential_id)
    }

    fn public_point(&self) -> (Vec<u8>, Vec<u8>) {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.key).unwrap();
        let point = key.public_key().as_ref().to_vec();
        (point[1..33].to_vec(), point[33..65].to_vec())
    }

    /// Encodes the credential public key as a COSE_Key (RFC 9053 §7.1.1, EC2 P-256, ES256).
    fn cose_key(&self) -> Vec<u8> {
        let (x, y) = self.public_point();
        let mut map = BTreeMap::new();
        map.insert(Cbor::Integer(1), Cbor::Integer(2));
        map.insert(Cbor::Integer(3), Cbor::Integer(-7));
        map.insert(Cbor::Integer(-1), Cbor::Integer(1));
        map.insert(Cbor::Integer(-2), Cbor::Bytes(x));
        map.insert(Cbor::Integer(-3), Cbor::Bytes(y));
        serde_cbor_2::to_vec(&Cbor::Map(map)).unwrap()
    }

    /// Builds authenticator data; `attested` adds the attested credential data.
    pub fn auth_data(&self, rp_id: &str, flags: u8, counter: u32, attested: bool) -> Vec<u8> {
        let mut data = sha256(rp_id.as_bytes()).to_vec();
        data.push(flags | if attested { AT } else { 0 });
        data.extend(counter.to_be_bytes());
        if attested {
            data.extend(self.aaguid);
            data.extend((self.credential_id.len() as u16).to_be_bytes());
            data.extend(&self.credential_id);
            data.extend(self.cose_key());
        }
        data
    }

    /// Client data as a browser writes it.
    pub fn client_data(&self, type_: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": type_,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// Responds to registration options (`{"publicKey": ...}`) with a credential in `toJSON()` form.
    pub fn register(&self, options: &Value, attestation: &Attestation) -> Value {
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = self.client_data("webauthn.create", challenge);
        let auth_data = self.auth_data(&self.rp_id, UP | UV | self.extra_flags, self.counter, true);
        self.registration_response(&client_data, &auth_data, attestation)
    }

    /// Builds a registration response from chosen client data and authenticator data.
    pub fn registration_response(
        &self,
        client_data: &[u8],
        auth_data: &[u8],
        attestation: &Attestation,
    ) -> Value {
        let signed = [auth_data, &sha256(client_data)].concat();
        let (fmt, statement) = self.statement(attestation, &signed);
        self.with_statement(client_data, auth_data, fmt, statement)
    }

    /// Responds to registration options with `android-key` attestation: the credential key's
    /// certificate from `ca`, with a key description whose hardware-enforced list says
    /// `origin` (0 generated, 2 imported) and `purpose` (2 sign, 0 encrypt).
    pub fn register_android_key(
        &self,
        options: &Value,
        ca: &TestCa,
        origin: u8,
        purpose: u8,
    ) -> Value {
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = self.client_data("webauthn.create", challenge);
        let auth_data = self.auth_data(&self.rp_id, UP | UV | self.extra_flags, self.counter, true);
        let client_data_hash = sha256(&client_data);
        let leaf = ca.android_key_leaf(&self.key, &client_data_hash, origin, purpose);
        let signed = [&auth_data[..], &client_data_hash].concat();
        let text = |s: &str| Cbor::Text(s.to_owned());
        let mut map = BTreeMap::new();
        map.insert(text("alg"), Cbor::Integer(-7));
        map.insert(text("sig"), Cbor::Bytes(sign(&self.key, &signed)));
        map.insert(text("x5c"), Cbor::Array(vec![Cbor::Bytes(leaf)]));
        self.with_statement(&client_data, &auth_data, "android-key", Cbor::Map(map))
    }

    fn with_statement(
        &self,
        client_data: &[u8],
        auth_data: &[u8],
        fmt: &str,
        statement: Cbor,
    ) -> Value {
        let mut object = BTreeMap::new();
        object.insert(Cbor::Text("fmt".into()), Cbor::Text(fmt.into()));
        object.insert(Cbor::Text("attStmt".into()), statement);
        object.insert(
            Cbor::Text("authData".into()),
            Cbor::Bytes(auth_data.to_vec()),
        );
        let attestation_object = serde_cbor_2::to_vec(&Cbor::Map(object)).unwrap();
        json!({
            "id": self.credential_id_b64(),
            "rawId": self.credential_id_b64(),
            "type": "public-key",
            "response": {
                "clientDataJSON": base64url::encode(client_data),
                "attestationObject": base64url::encode(attestation_object),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
    }

    fn statement(&self, attestation: &Attestation, signed: &[u8]) -> (&'static str, Cbor) {
        let text = |s: &str| Cbor::Text(s.to_owned());
        let mut map = BTreeMap::new();
        match attestation {
            Attestation::None => ("none", Cbor::Map(map)),
            Attestation::PackedSelf => {
                map.insert(text("alg"), Cbor::Integer(-7));
                map.insert(text("sig"), Cbor::Bytes(sign(&self.key, signed)));
                ("packed", Cbor::Map(map))
            }
            Attestation::Packed { chain, key } => {
                map.insert(text("alg"), Cbor::Integer(-7));
                map.insert(text("sig"), Cbor::Bytes(sign(key, signed)));
                let x5c = chain.iter().map(|der| Cbor::Bytes(der.clone())).collect();
                map.insert(text("x5c"), Cbor::Array(x5c));
                ("packed", Cbor::Map(map))
            }
            Attestation::Tpm {
                aik,
                key,
                ecc_unique_with_length,
            } => {
                let pub_area = self.tpm_pub_area(*ecc_unique_with_length);
                let cert_info = tpm_certify_info(&pub_area, &sha256(signed));
                map.insert(text("ver"), text("2.0"));
                map.insert(text("alg"), Cbor::Integer(-7));
                map.insert(text("sig"), Cbor::Bytes(sign(key, &cert_info)));
                map.insert(text("x5c"), Cbor::Array(vec![Cbor::Bytes(aik.clone())]));
                map.insert(text("certInfo"), Cbor::Bytes(cert_info));
                map.insert(text("pubArea"), Cbor::Bytes(pub_area));
                ("tpm", Cbor::Map(map))
            }
        }
    }

    /// TPMT_PUBLIC of the credential key (TPM 2.0 Part 2 §12.2.4): an ECC NIST P-256 signing
    /// key whose `unique` is a TPMS_ECC_POINT, two TPM2B values with no length in front.
    fn tpm_pub_area(&self, ecc_unique_with_length: bool) -> Vec<u8> {
        let (x, y) = self.public_point();
        let mut area = Vec::new();
        area.extend(0x0023u16.to_be_bytes()); // TPM_ALG_ECC
        area.extend(0x000Bu16.to_be_bytes()); // nameAlg SHA-256
        area.extend(0x0004_0472u32.to_be_bytes()); // objectAttributes: sign, fixedTPM, ...
        area.extend(0u16.to_be_bytes()); // authPolicy: empty
        area.extend(0x0010u16.to_be_bytes()); // symmetric: TPM_ALG_NULL
        area.extend(0x0010u16.to_be_bytes()); // scheme: TPM_ALG_NULL, as Windows Hello sends
        area.extend(0x0003u16.to_be_bytes()); // curveID: TPM_ECC_NIST_P256
        area.extend(0x0010u16.to_be_bytes()); // kdf: TPM_ALG_NULL
        let point = [
            &(x.len() as u16).to_be_bytes()[..],
            &x,
            &(y.len() as u16).to_be_bytes()[..],
            &y,
        ]
        .concat();
        if ecc_unique_with_length {
            area.extend((point.len() as u16).to_be_bytes());
        }
        area.extend(point);
        area
    }

    /// Responds to request options (`{"publicKey": ...}`) with an assertion in `toJSON()` form,
    /// advancing the counter if it counts.
    pub fn assert(&mut self, options: &Value) -> Value {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .unwrap()
            .to_owned();
        if self.counter > 0 {
            self.counter += 1;
        }
        let client_data = self.client_data("webauthn.get", &challenge);
        let auth_data =
            self.auth_data(&self.rp_id, UP | UV | self.extra_flags, self.counter, false);
        self.assertion_response(&client_data, &auth_data)
    }

    /// Builds an assertion from chosen client data and authenticator data.
    pub fn assertion_response(&self, client_data: &[u8], auth_data: &[u8]) -> Value {
        let signed = [auth_data, &sha256(client_data)].concat();
        json!({
            "id": self.credential_id_b64(),
            "rawId": self.credential_id_b64(),
            "type": "public-key",
            "response": {
                "clientDataJSON": base64url::encode(client_data),
                "authenticatorData": base64url::encode(auth_data),
                "signature": base64url::encode(sign(&self.key, &signed)),
                "userHandle": self.user_handle.as_ref().map(base64url::encode),
            },
            "clientExtensionResults": {},
        })
    }
}

/// TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY for `pub_area`, with `extra_data` (TPM 2.0 Part 2
/// §10.12.8).
fn tpm_certify_info(pub_area: &[u8], extra_data: &[u8]) -> Vec<u8> {
    let name = [&0x000Bu16.to_be_bytes()[..], &sha256(pub_area)].concat();
    let mut info = Vec::new();
    info.extend(0xff54_4347u32.to_be_bytes()); // TPM_GENERATED_VALUE
    info.extend(0x8017u16.to_be_bytes()); // TPM_ST_ATTEST_CERTIFY
    info.extend((name.len() as u16).to_be_bytes()); // qualifiedSigner
    info.extend(&name);
    info.extend((extra_data.len() as u16).to_be_bytes());
    info.extend(extra_data);
    info.extend(0u64.to_be_bytes()); // clockInfo.clock
    info.extend(0u32.to_be_bytes()); // resetCount
    info.extend(0u32.to_be_bytes()); // restartCount
    info.push(1); // safe
    info.extend(0x0002_0000_0000_0000u64.to_be_bytes()); // firmwareVersion
    info.extend((name.len() as u16).to_be_bytes()); // attested.name
    info.extend(&name);
    info.extend((name.len() as u16).to_be_bytes()); // attested.qualifiedName
    info.extend(&name);
    info
}
