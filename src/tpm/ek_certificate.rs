//! EK certificates: unwrapping them from TPM NV contents, a lenient X.509 parse, and
//! verification of the chain to trusted TPM vendor roots.
//!
//! Many vendor EK certificates are not strict DER, so the parse is lenient where a strict parser
//! would reject real devices, and strict where it matters:
//!
//! - NV contents may start with the TCG header `0x10 0x01 0x00` and a `u16` length, and may end
//!   in `0x00` or `0xff` padding. A declared length longer than the data is rejected.
//! - x509-parser 0.18 reads the certificate. It accepts a serial number with superfluous leading
//!   zeros and SET OF elements in any order.
//! - Names are compared RDN by RDN, with the attributes inside an RDN compared as a set and their
//!   values byte for byte, so an issuer whose SET OF is not in DER order still finds its CA.
//! - Every signature is verified with aws-lc-rs over the TBS bytes exactly as received, so the
//!   leniency never changes what the issuer signed.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as CertificatePublicKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name};

use super::error::TpmError;
use super::public::{PublicKey, TpmPublic, curve, left_pad, rsa_exponent};
use super::wire::Reader;
use crate::clock::UnixTime;
use crate::crypto::secret::sha256;

/// The TCG header some TPMs put in front of a certificate in NV: tag 0x1001, type 0x00, then a
/// `u16` length (TCG PC Client Platform TPM Profile).
const NV_HEADER: [u8; 3] = [0x10, 0x01, 0x00];

/// Most intermediate CA certificates between an EK certificate and its root.
const MAX_INTERMEDIATES: usize = 3;

/// DER content octets of the named-curve OIDs (RFC 5480 §2.1.1.1).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Certificates an EK certificate may chain through. Self-signed certificates are the trust
/// anchors; the others are intermediates, trusted only through a chain to an anchor.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    certificates: Vec<StoredCertificate>,
}

#[derive(Debug, Clone)]
struct StoredCertificate {
    der: Vec<u8>,
    self_signed: bool,
}

/// An error loading the trust store.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} has a CERTIFICATE block that is not valid base64")]
    Pem { path: PathBuf },
    #[error("{path} contains an invalid certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{0} contains no PEM certificates; add the TPM vendors' root certificates")]
    Empty(PathBuf),
}

impl TrustStore {
    /// Loads every `CERTIFICATE` block of every `.pem`, `.crt` or `.cer` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, TrustStoreError> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |error| TrustStoreError::Io { path, error }
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            let extension = path.extension().and_then(|extension| extension.to_str());
            if matches!(extension, Some("pem" | "crt" | "cer")) {
                paths.push(path);
            }
        }
        paths.sort();

        let mut store = Self::default();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
            let ders = pem_certificates(&text)
                .ok_or_else(|| TrustStoreError::Pem { path: path.clone() })?;
            for der in ders {
                store
                    .add_der(der)
                    .map_err(|error| TrustStoreError::Certificate {
                        path: path.clone(),
                        reason: error.to_string(),
                    })?;
            }
        }
        if store.certificates.is_empty() {
            return Err(TrustStoreError::Empty(dir.to_owned()));
        }
        Ok(store)
    }

    /// Adds one DER certificate.
    pub fn add_der(&mut self, der: Vec<u8>) -> Result<(), TpmError> {
        let certificate = parse_certificate(&der)?;
        let self_signed = names_equal(certificate.subject(), certificate.issuer())
            && verify_signed_by(&certificate, certificate.public_key()).is_ok();
        self.certificates
            .push(StoredCertificate { der, self_signed });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

/// Decodes every `CERTIFICATE` block in a PEM text, or returns `None` if one is not base64.
fn pem_certificates(text: &str) -> Option<Vec<Vec<u8>>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut ders = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body = rest.get(start + BEGIN.len()..)?;
        let end = body.find(END)?;
        let base64: String = body
            .get(..end)?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        ders.push(
            base64::engine::general_purpose::STANDARD
                .decode(base64)
                .ok()?,
        );
        rest = body.get(end + END.len()..)?;
    }
    Some(ders)
}

/// The public key in a certificate, in the form the EK public area is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateKey {
    /// Modulus and exponent as big-endian integers without leading zeros.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// A TPM curve identifier and the uncompressed point `0x04 || x || y`.
    Ec { curve: u16, point: Vec<u8> },
}

/// An EK certificate whose chain to a trusted root has been verified.
#[derive(Debug, Clone)]
pub struct VerifiedEkCertificate {
    /// The certificate's DER, without any NV header or padding.
    pub der: Vec<u8>,
    /// SHA-256 of `der`, which the device record keeps as the EK certificate fingerprint.
    pub sha256: [u8; 32],
    pub key: CertificateKey,
}

impl VerifiedEkCertificate {
    /// Checks that `ek` is the key this certificate certifies.
    pub fn check_ek_public(&self, ek: &TpmPublic) -> Result<(), TpmError> {
        if tpm_key(ek).as_ref() == Some(&self.key) {
            Ok(())
        } else {
            Err(TpmError::EkPublicMismatch)
        }
    }
}

/// Reads the EK certificate from NV contents and verifies its chain to a root in `trust` at
/// `now`.
pub fn verify_ek_certificate(
    nv_contents: &[u8],
    trust: &TrustStore,
    now: UnixTime,
) -> Result<VerifiedEkCertificate, TpmError> {
    let der = certificate_from_nv(nv_contents)?;
    let certificate = parse_certificate(der)?;
    verify_chain(&certificate, trust, now)?;
    Ok(VerifiedEkCertificate {
        der: der.to_vec(),
        sha256: sha256(der),
        key: certificate_key(certificate.public_key())?,
    })
}

/// Strips the TCG NV header and trailing padding from NV contents, leaving exactly the
/// certificate's DER.
pub(crate) fn certificate_from_nv(nv: &[u8]) -> Result<&[u8], TpmError> {
    // An unwritten NV area reads as all 0xff or all 0x00.
    if nv.iter().all(|&byte| byte == 0x00) || nv.iter().all(|&byte| byte == 0xff) {
        return Err(TpmError::NoEkCertificate);
    }
    let body = match nv.strip_prefix(&NV_HEADER) {
        Some(after_header) => {
            let mut reader = Reader::new(after_header, "EK certificate NV header");
            let declared = usize::from(reader.u16()?);
            let rest = after_header.get(2..).unwrap_or_default();
            let (certificate, padding) = split_declared(rest, declared)?;
            check_padding(padding)?;
            certificate
        }
        None => nv,
    };
    let declared = der_sequence_len(body)?;
    let (certificate, padding) = split_declared(body, declared)?;
    check_padding(padding)?;
    Ok(certificate)
}

fn split_declared(bytes: &[u8], declared: usize) -> Result<(&[u8], &[u8]), TpmError> {
    if declared > bytes.len() {
        return Err(TpmError::EkCertificateLengthExceedsData {
            declared,
            available: bytes.len(),
        });
    }
    Ok(bytes.split_at(declared))
}

fn check_padding(padding: &[u8]) -> Result<(), TpmError> {
    if padding.iter().all(|&byte| byte == 0x00 || byte == 0xff) {
        Ok(())
    } else {
        Err(TpmError::EkCertificateTrailingData(padding.len()))
    }
}

/// Returns the total length, header included, that the outer SEQUENCE of a certificate declares.
fn der_sequence_len(bytes: &[u8]) -> Result<usize, TpmError> {
    let malformed = |reason: &str| TpmError::CertificateMalformed(reason.to_owned());
    let mut reader = Reader::new(bytes, "EK certificate");
    if reader.u8()? != 0x30 {
        return Err(malformed("does not start with a SEQUENCE"));
    }
    let first = reader.u8()?;
    if first < 0x80 {
        return Ok(2 + usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return Err(malformed("SEQUENCE has an indefinite or oversized length"));
    }
    let mut len: usize = 0;
    for &byte in reader.take(count)? {
        len = (len << 8) | usize::from(byte);
    }
    len.checked_add(2 + count)
        .ok_or_else(|| malformed("SEQUENCE length overflows"))
}

/// Parses one certificate that must fill `der` exactly.
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, TpmError> {
    let (rest, certificate) = X509Certificate::from_der(der)
        .map_err(|error| TpmError::CertificateMalformed(error.to_string()))?;
    if !rest.is_empty() {
        return Err(TpmError::EkCertificateTrailingData(rest.len()));
    }
    Ok(certificate)
}

fn verify_chain(
    ek_certificate: &X509Certificate<'_>,
    trust: &TrustStore,
    now: UnixTime,
) -> Result<(), TpmError> {
    let now = i64::try_from(now).map_err(|_| TpmError::Internal("time overflows i64"))?;
    check_validity(ek_certificate, now)?;

    let mut issuer = find_issuer(ek_certificate, trust)?;
    for _ in 0..MAX_INTERMEDIATES {
        if issuer.self_signed {
            return Ok(());
        }
        // An intermediate must itself be valid and chain to an anchor.
        let intermediate = parse_certificate(&issuer.der)?;
        check_validity(&intermediate, now)?;
        issuer = find_issuer(&intermediate, trust)?;
    }
    if issuer.self_signed {
        Ok(())
    } else {
        Err(untrusted(ek_certificate))
    }
}

/// Finds the CA certificate in `trust` that issued `certificate` and verifies its signature.
fn find_issuer<'t>(
    certificate: &X509Certificate<'_>,
    trust: &'t TrustStore,
) -> Result<&'t StoredCertificate, TpmError> {
    let mut signature_error = None;
    for stored in &trust.certificates {
        let Ok(candidate) = parse_certificate(&stored.der) else {
            continue;
        };
        if !names_equal(candidate.subject(), certificate.issuer()) || !may_issue(&candidate) {
            continue;
        }
        match verify_signed_by(certificate, candidate.public_key()) {
            Ok(()) => return Ok(stored),
            Err(error) => signature_error = Some(error),
        }
    }
    Err(signature_error.unwrap_or_else(|| untrusted(certificate)))
}

fn untrusted(certificate: &X509Certificate<'_>) -> TpmError {
    TpmError::UntrustedEkCertificate(certificate.issuer().to_string())
}

/// RFC 5280 §4.2.1.9 and §4.2.1.3: an issuer has basicConstraints with cA set and, if it has a
/// keyUsage extension, keyCertSign in it.
fn may_issue(candidate: &X509Certificate<'_>) -> bool {
    let is_ca =
        matches!(candidate.basic_constraints(), Ok(Some(constraints)) if constraints.value.ca);
    let may_sign = match candidate.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    is_ca && may_sign
}

fn check_validity(certificate: &X509Certificate<'_>, now: i64) -> Result<(), TpmError> {
    let validity = certificate.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before || now > not_after {
        return Err(TpmError::CertificateNotValidAt {
            subject: certificate.subject().to_string(),
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// Compares two names as equal RDN sequences. The attributes inside each RDN are compared as a
/// set, and each value byte for byte.
fn names_equal(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    a.as_raw() == b.as_raw() || canonical_rdns(a) == canonical_rdns(b)
}

/// One attribute of an RDN: its type OID, and its value's tag and content octets.
type Attribute = (Vec<u8>, u32, Vec<u8>);

/// Lists the RDNs of a name with each RDN's attributes sorted, so that SET OF order does not
/// matter.
fn canonical_rdns(name: &X509Name<'_>) -> Vec<Vec<Attribute>> {
    name.iter()
        .map(|rdn| {
            let mut attributes: Vec<Attribute> = rdn
                .iter()
                .map(|attribute| {
                    let value = attribute.attr_value();
                    let kind = attribute.attr_type().as_bytes().to_vec();
                    (kind, value.tag().0, value.data.to_vec())
                })
                .collect();
            attributes.sort();
            attributes
        })
        .collect()
}

/// Verifies the signature on `certificate` with the issuer's key, over the TBS bytes as received.
fn verify_signed_by(
    certificate: &X509Certificate<'_>,
    issuer_key: &SubjectPublicKeyInfo<'_>,
) -> Result<(), TpmError> {
    // RFC 5280 §4.1.1.2: the outer signatureAlgorithm must equal the signature field in the TBS.
    if certificate.signature_algorithm != certificate.tbs_certificate.signature {
        return Err(TpmError::SignatureAlgorithmMismatch);
    }
    let algorithm = verification_algorithm(&certificate.signature_algorithm, issuer_key)?;
    UnparsedPublicKey::new(algorithm, issuer_key.subject_public_key.data.as_ref())
        .verify(
            certificate.tbs_certificate.as_ref(),
            certificate.signature_value.data.as_ref(),
        )
        .map_err(|_| TpmError::BadCertificateSignature(certificate.subject().to_string()))
}

/// Chooses the aws-lc-rs algorithm for a certificate signature algorithm and issuer key. SHA-1
/// and RSA keys under 2048 bits are rejected.
fn verification_algorithm(
    algorithm: &AlgorithmIdentifier<'_>,
    issuer_key: &SubjectPublicKeyInfo<'_>,
) -> Result<&'static dyn VerificationAlgorithm, TpmError> {
    let oid = algorithm.algorithm.to_id_string();
    let curve = issuer_curve(issuer_key);
    let chosen: Option<&'static dyn VerificationAlgorithm> = match (oid.as_str(), curve) {
        ("1.2.840.113549.1.1.11", None) => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        ("1.2.840.113549.1.1.12", None) => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        ("1.2.840.113549.1.1.13", None) => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        ("1.2.840.10045.4.3.2", Some(curve::NIST_P256)) => Some(&signature::ECDSA_P256_SHA256_ASN1),
        ("1.2.840.10045.4.3.3", Some(curve::NIST_P256)) => Some(&signature::ECDSA_P256_SHA384_ASN1),
        ("1.2.840.10045.4.3.2", Some(curve::NIST_P384)) => Some(&signature::ECDSA_P384_SHA256_ASN1),
        ("1.2.840.10045.4.3.3", Some(curve::NIST_P384)) => Some(&signature::ECDSA_P384_SHA384_ASN1),
        _ => None,
    };
    chosen.ok_or(TpmError::UnsupportedCertificateSignature(oid))
}

/// Returns the TPM curve identifier of an EC key (0 for an unknown curve), or `None` for any
/// other key.
fn issuer_curve(key: &SubjectPublicKeyInfo<'_>) -> Option<u16> {
    if key.algorithm.algorithm.to_id_string() != "1.2.840.10045.2.1" {
        return None;
    }
    let parameters = key.algorithm.parameters.as_ref()?;
    match parameters.data {
        OID_P256 => Some(curve::NIST_P256),
        OID_P384 => Some(curve::NIST_P384),
        _ => Some(0),
    }
}

fn certificate_key(key: &SubjectPublicKeyInfo<'_>) -> Result<CertificateKey, TpmError> {
    let malformed = || TpmError::CertificateMalformed("unsupported public key".to_owned());
    match key.parsed().map_err(|_| malformed())? {
        CertificatePublicKey::RSA(rsa) => Ok(CertificateKey::Rsa {
            modulus: strip_leading_zeros(rsa.modulus).to_vec(),
            exponent: strip_leading_zeros(rsa.exponent).to_vec(),
        }),
        CertificatePublicKey::EC(point) => Ok(CertificateKey::Ec {
            curve: issuer_curve(key).ok_or_else(malformed)?,
            point: point.data().to_vec(),
        }),
        _ => Err(malformed()),
    }
}

/// Converts the key of a TPM public area to the form of certificate keys.
fn tpm_key(public: &TpmPublic) -> Option<CertificateKey> {
    match &public.key {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => Some(CertificateKey::Rsa {
            modulus: strip_leading_zeros(modulus).to_vec(),
            exponent: rsa_exponent(*exponent),
        }),
        PublicKey::Ecc { curve, x, y, .. } => {
            let mut point = vec![0x04];
            match *curve {
                curve::NIST_P256 => {
                    point.extend(left_pad::<32>(x).ok()?);
                    point.extend(left_pad::<32>(y).ok()?);
                }
                curve::NIST_P384 => {
                    point.extend(left_pad::<48>(x).ok()?);
                    point.extend(left_pad::<48>(y).ok()?);
                }
                _ => return None,
            }
            Some(CertificateKey::Ec {
                curve: *curve,
                point,
            })
        }
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
    bytes.get(skip..).unwrap_or_default()
}
