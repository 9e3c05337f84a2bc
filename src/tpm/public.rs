//! TPM2B_PUBLIC, the public area of a TPM object (TPM 2.0 Library Specification, Part 2 §12.2),
//! and the object's Name (Part 1 §16).

use super::error::TpmError;
use super::wire::Reader;
use crate::crypto::base64url;
use crate::crypto::secret::sha256;
use crate::crypto::{Jwk, JwkError};

/// Algorithm identifiers (TPM_ALG_ID, Part 2 §6.3) that devbound reads.
pub mod alg {
    pub const RSA: u16 = 0x0001;
    pub const SHA256: u16 = 0x000b;
    pub const AES: u16 = 0x0006;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const NULL: u16 = 0x0010;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDH: u16 = 0x0019;
    pub const ECDAA: u16 = 0x001a;
    pub const SM2: u16 = 0x001b;
    pub const ECSCHNORR: u16 = 0x001c;
    pub const MGF1: u16 = 0x0007;
    pub const KDF1_SP800_56A: u16 = 0x0020;
    pub const KDF2: u16 = 0x0021;
    pub const KDF1_SP800_108: u16 = 0x0022;
    pub const ECC: u16 = 0x0023;
    pub const CFB: u16 = 0x0043;
}

/// Curve identifiers (TPM_ECC_CURVE, Part 2 §6.4).
pub mod curve {
    pub const NIST_P256: u16 = 0x0003;
    pub const NIST_P384: u16 = 0x0004;
}

/// The TPMA_OBJECT bits (Part 2 §8.3) that enrollment checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;

    pub fn contains(self, bit: u32) -> bool {
        self.0 & bit == bit
    }

    /// Checks each `(bit, name, expected)` rule and names the first attribute that differs.
    pub(crate) fn check(
        self,
        key: &'static str,
        rules: &[(u32, &'static str, bool)],
    ) -> Result<(), TpmError> {
        for &(bit, attribute, expected) in rules {
            if self.contains(bit) != expected {
                return Err(TpmError::ObjectAttribute {
                    key,
                    attribute,
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// A scheme selector (TPMT_SYM_DEF_OBJECT, TPMT_RSA_SCHEME, TPMT_ECC_SCHEME or TPMT_KDF_SCHEME):
/// an algorithm and, unless it is `TPM_ALG_NULL`, its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    pub algorithm: u16,
    /// The hash algorithm of a signing, encryption or KDF scheme, or `TPM_ALG_NULL`.
    pub hash: u16,
    /// The key size of a symmetric definition, in bits; 0 for other schemes.
    pub key_bits: u16,
    /// The block cipher mode of a symmetric definition; `TPM_ALG_NULL` for other schemes.
    pub mode: u16,
}

impl Scheme {
    const NULL: Self = Self {
        algorithm: alg::NULL,
        hash: alg::NULL,
        key_bits: 0,
        mode: alg::NULL,
    };

    fn hash(algorithm: u16, hash: u16) -> Self {
        Self {
            algorithm,
            hash,
            ..Self::NULL
        }
    }
}

/// The type-specific half of a public area: parameters and the public key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        symmetric: Scheme,
        scheme: Scheme,
        key_bits: u16,
        /// The public exponent as the TPM stores it, where 0 means 65537.
        exponent: u32,
        modulus: Vec<u8>,
    },
    Ecc {
        symmetric: Scheme,
        scheme: Scheme,
        curve: u16,
        kdf: Scheme,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

/// A parsed TPM2B_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// The marshalled TPMT_PUBLIC as received, which the Name is computed over.
    pub tpmt_public: Vec<u8>,
    pub name_alg: u16,
    pub attributes: ObjectAttributes,
    pub auth_policy: Vec<u8>,
    pub key: PublicKey,
}

impl TpmPublic {
    /// Parses a TPM2B_PUBLIC: a `u16` size and a TPMT_PUBLIC of RSA or ECC type, with no bytes
    /// after it.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut outer = Reader::new(bytes, "TPM2B_PUBLIC");
        let tpmt_public = outer.sized()?;
        outer.finish()?;

        let mut reader = Reader::new(tpmt_public, "TPMT_PUBLIC");
        let object_type = reader.u16()?;
        let name_alg = reader.u16()?;
        let attributes = ObjectAttributes(reader.u32()?);
        let auth_policy = reader.sized()?.to_vec();
        let key = match object_type {
            alg::RSA => read_rsa(&mut reader)?,
            alg::ECC => read_ecc(&mut reader)?,
            other => return Err(unsupported("TPMT_PUBLIC", other)),
        };
        reader.finish()?;

        Ok(Self {
            tpmt_public: tpmt_public.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            key,
        })
    }

    /// Computes the object's Name, `nameAlg || H_nameAlg(TPMT_PUBLIC)` (Part 1 §16). Only SHA-256
    /// is supported as the name algorithm.
    pub fn name(&self) -> Result<Vec<u8>, TpmError> {
        if self.name_alg != alg::SHA256 {
            return Err(unsupported("TPMT_PUBLIC nameAlg", self.name_alg));
        }
        let mut name = alg::SHA256.to_be_bytes().to_vec();
        name.extend_from_slice(&sha256(&self.tpmt_public));
        Ok(name)
    }

    /// Converts the key to a P-256 JWK, if it is an ECC key on that curve.
    pub fn p256_jwk(&self) -> Result<Jwk, TpmError> {
        let PublicKey::Ecc { curve, x, y, .. } = &self.key else {
            return Err(TpmError::UnsupportedKey {
                key: "key",
                reason: "not an ECC key",
            });
        };
        if *curve != curve::NIST_P256 {
            return Err(TpmError::UnsupportedKey {
                key: "key",
                reason: "ECC curve is not NIST P-256",
            });
        }
        let jwk = Jwk::Ec {
            crv: "P-256".to_owned(),
            x: base64url::encode(left_pad::<32>(x)?),
            y: base64url::encode(left_pad::<32>(y)?),
        };
        jwk.parse_key().map_err(|error| match error {
            JwkError::InvalidPoint => TpmError::UnsupportedKey {
                key: "key",
                reason: "ECC point is not on NIST P-256",
            },
            _ => TpmError::Internal("P-256 JWK built from a TPM point is invalid"),
        })?;
        Ok(jwk)
    }
}

/// Encodes an RSA public exponent as a big-endian integer without leading zeros. The TPM stores
/// 0 for the default exponent 65537 (Part 2 §12.2.3.5).
pub(crate) fn rsa_exponent(exponent: u32) -> Vec<u8> {
    let exponent = if exponent == 0 { 65537 } else { exponent };
    let bytes = exponent.to_be_bytes();
    let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
    bytes.get(skip..).unwrap_or_default().to_vec()
}

/// Left-pads a big-endian integer to `N` bytes; TPMs may drop leading zero bytes.
pub(crate) fn left_pad<const N: usize>(value: &[u8]) -> Result<[u8; N], TpmError> {
    let Some(offset) = N.checked_sub(value.len()) else {
        return Err(TpmError::UnsupportedKey {
            key: "key",
            reason: "integer is longer than the key size",
        });
    };
    let mut padded = [0u8; N];
    if let Some(tail) = padded.get_mut(offset..) {
        tail.copy_from_slice(value);
    }
    Ok(padded)
}

fn unsupported(structure: &'static str, algorithm: u16) -> TpmError {
    TpmError::UnsupportedAlgorithm {
        structure,
        algorithm,
    }
}

fn read_rsa(reader: &mut Reader<'_>) -> Result<PublicKey, TpmError> {
    let symmetric = read_symmetric(reader)?;
    let scheme = read_scheme(reader, "TPMT_RSA_SCHEME")?;
    let key_bits = reader.u16()?;
    let exponent = reader.u32()?;
    let modulus = reader.sized()?.to_vec();
    Ok(PublicKey::Rsa {
        symmetric,
        scheme,
        key_bits,
        exponent,
        modulus,
    })
}

fn read_ecc(reader: &mut Reader<'_>) -> Result<PublicKey, TpmError> {
    let symmetric = read_symmetric(reader)?;
    let scheme = read_scheme(reader, "TPMT_ECC_SCHEME")?;
    let curve = reader.u16()?;
    let kdf = read_kdf(reader)?;
    let x = reader.sized()?.to_vec();
    let y = reader.sized()?.to_vec();
    Ok(PublicKey::Ecc {
        symmetric,
        scheme,
        curve,
        kdf,
        x,
        y,
    })
}

/// TPMT_SYM_DEF_OBJECT: an algorithm and, unless it is NULL, a key size and a mode.
fn read_symmetric(reader: &mut Reader<'_>) -> Result<Scheme, TpmError> {
    let algorithm = reader.u16()?;
    if algorithm == alg::NULL {
        return Ok(Scheme::NULL);
    }
    let key_bits = reader.u16()?;
    let mode = reader.u16()?;
    Ok(Scheme {
        algorithm,
        hash: alg::NULL,
        key_bits,
        mode,
    })
}

/// TPMT_RSA_SCHEME or TPMT_ECC_SCHEME. The size of the details depends on the scheme, so an
/// unknown scheme cannot be skipped and is rejected.
fn read_scheme(reader: &mut Reader<'_>, structure: &'static str) -> Result<Scheme, TpmError> {
    let algorithm = reader.u16()?;
    match algorithm {
        alg::NULL | alg::RSAES => Ok(Scheme::hash(algorithm, alg::NULL)),
        alg::RSASSA
        | alg::RSAPSS
        | alg::OAEP
        | alg::ECDSA
        | alg::ECDH
        | alg::SM2
        | alg::ECSCHNORR => Ok(Scheme::hash(algorithm, reader.u16()?)),
        alg::ECDAA => {
            let hash = reader.u16()?;
            let _count = reader.u16()?;
            Ok(Scheme::hash(algorithm, hash))
        }
        other => Err(unsupported(structure, other)),
    }
}

/// TPMT_KDF_SCHEME: a KDF and, unless it is NULL, its hash algorithm.
fn read_kdf(reader: &mut Reader<'_>) -> Result<Scheme, TpmError> {
    let algorithm = reader.u16()?;
    match algorithm {
        alg::NULL => Ok(Scheme::NULL),
        alg::MGF1 | alg::KDF1_SP800_56A | alg::KDF2 | alg::KDF1_SP800_108 => {
            Ok(Scheme::hash(algorithm, reader.u16()?))
        }
        other => Err(unsupported("TPMT_KDF_SCHEME", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::test_support::fixture;

    #[test]
    fn ek_public_parses_as_rsa_2048_template() {
        let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-public.bin")).unwrap();
        let PublicKey::Rsa {
            symmetric,
            key_bits,
            exponent,
            modulus,
            ..
        } = &ek.key
        else {
            panic!("EK is not RSA: {ek:?}");
        };
        assert_eq!(*key_bits, 2048);
        assert_eq!(*exponent, 0);
        assert_eq!(modulus.len(), 256);
        assert_eq!(symmetric.algorithm, alg::AES);
        assert_eq!(symmetric.key_bits, 128);
        assert_eq!(symmetric.mode, alg::CFB);
        assert!(ek.attributes.contains(ObjectAttributes::RESTRICTED));
        assert!(ek.attributes.contains(ObjectAttributes::DECRYPT));
    }

    #[test]
    fn ak_name_matches_name_from_tpm() {
        let ak = TpmPublic::from_tpm2b(&fixture("ak-ecc-public.bin")).unwrap();
        assert_eq!(ak.name().unwrap(), fixture("ak-ecc-name.bin"));
    }

    #[test]
    fn session_key_converts_to_p256_jwk() {
        let key = TpmPublic::from_tpm2b(&fixture("session-key-public.bin")).unwrap();
        let jwk = key.p256_jwk().unwrap();
        assert!(matches!(jwk, Jwk::Ec { ref crv, .. } if crv == "P-256"));
        assert!(jwk.parse_key().is_ok());
    }

    #[test]
    fn from_tpm2b_rejects_every_truncation_and_trailing_byte() {
        for name in [
            "swtpm-ek-public.bin",
            "ak-ecc-public.bin",
            "ak-rsa-public.bin",
        ] {
            let bytes = fixture(name);
            assert!(TpmPublic::from_tpm2b(&bytes).is_ok(), "{name}");
            for len in 0..bytes.len() {
                assert!(
                    TpmPublic::from_tpm2b(&bytes[..len]).is_err(),
                    "{name} cut to {len} bytes"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                TpmPublic::from_tpm2b(&longer),
                Err(TpmError::TrailingBytes("TPM2B_PUBLIC"))
            );
        }
    }

    #[test]
    fn from_tpm2b_rejects_unknown_object_type() {
        let mut bytes = fixture("ak-ecc-public.bin");
        bytes[2..4].copy_from_slice(&alg::KEYEDHASH.to_be_bytes());
        assert_eq!(
            TpmPublic::from_tpm2b(&bytes),
            Err(TpmError::UnsupportedAlgorithm {
                structure: "TPMT_PUBLIC",
                algorithm: alg::KEYEDHASH
            })
        );
    }

    #[test]
    fn from_tpm2b_survives_every_single_byte_change() {
        let bytes = fixture("ak-ecc-public.bin");
        for index in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[index] = value;
                let _ = TpmPublic::from_tpm2b(&changed).and_then(|public| public.name());
            }
        }
    }

    #[test]
    fn left_pad_restores_dropped_leading_zeros() {
        assert_eq!(left_pad::<4>(&[1, 2]).unwrap(), [0, 0, 1, 2]);
        assert!(left_pad::<2>(&[1, 2, 3]).is_err());
    }
}
