//! TPM2_Certify evidence: the TPMS_ATTEST the TPM signs (TPM 2.0 Library Specification, Part 2
//! §10.12) and the AK's TPMT_SIGNATURE over it (Part 2 §11.3.4).

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};

use super::error::TpmError;
use super::public::{PublicKey, TpmPublic, alg, curve, left_pad, rsa_exponent};
use super::wire::Reader;

/// TPM_GENERATED_VALUE: the magic that marks a structure the TPM itself produced (Part 2 §6.2).
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_CERTIFY (Part 2 §6.9).
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;

/// The fields of a certify TPMS_ATTEST that enrollment checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifyAttest {
    /// The AK's qualified name.
    pub qualified_signer: Vec<u8>,
    /// The qualifyingData passed to TPM2_Certify: the server's nonce.
    pub extra_data: Vec<u8>,
    /// TPMS_CERTIFY_INFO.name: the Name of the certified key.
    pub name: Vec<u8>,
    pub qualified_name: Vec<u8>,
}

impl CertifyAttest {
    /// Parses a TPMS_ATTEST of type certify, with no bytes after it.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut reader = Reader::new(bytes, "TPMS_ATTEST");
        let magic = reader.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::WrongMagic(magic));
        }
        let attestation_type = reader.u16()?;
        if attestation_type != TPM_ST_ATTEST_CERTIFY {
            return Err(TpmError::WrongAttestationType(attestation_type));
        }
        let qualified_signer = reader.sized()?.to_vec();
        let extra_data = reader.sized()?.to_vec();

        // TPMS_CLOCK_INFO (clock, resetCount, restartCount, safe) and firmwareVersion.
        reader.u64()?;
        reader.u32()?;
        reader.u32()?;
        reader.u8()?;
        reader.u64()?;

        let name = reader.sized()?.to_vec();
        let qualified_name = reader.sized()?.to_vec();
        reader.finish()?;
        Ok(Self {
            qualified_signer,
            extra_data,
            name,
            qualified_name,
        })
    }
}

/// A parsed TPMT_SIGNATURE of the two kinds an AK makes here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkSignature {
    /// ECDSA with SHA-256. `r` and `s` have the length the TPM chose, which may be under 32.
    Ecdsa { r: Vec<u8>, s: Vec<u8> },
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rsassa { signature: Vec<u8> },
}

impl AkSignature {
    /// Parses a TPMT_SIGNATURE, accepting only ECDSA and RSASSA with SHA-256.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut reader = Reader::new(bytes, "TPMT_SIGNATURE");
        let scheme = reader.u16()?;
        if scheme != alg::ECDSA && scheme != alg::RSASSA {
            return Err(unsupported(scheme));
        }
        let hash = reader.u16()?;
        if hash != alg::SHA256 {
            return Err(unsupported(hash));
        }
        let signature = if scheme == alg::ECDSA {
            let r = reader.sized()?.to_vec();
            let s = reader.sized()?.to_vec();
            Self::Ecdsa { r, s }
        } else {
            Self::Rsassa {
                signature: reader.sized()?.to_vec(),
            }
        };
        reader.finish()?;
        Ok(signature)
    }

    /// Verifies this signature by `ak` over `message`.
    pub fn verify(&self, ak: &TpmPublic, message: &[u8]) -> Result<(), TpmError> {
        match (self, &ak.key) {
            (Self::Ecdsa { r, s }, PublicKey::Ecc { curve, x, y, .. })
                if *curve == curve::NIST_P256 =>
            {
                // A TPM drops leading zero bytes of r and s; the fixed format needs 32 each.
                // Low S is not required because TPMs do not normalise S.
                let pad = |value: &[u8]| left_pad::<32>(value).map_err(|_| TpmError::BadSignature);
                let signature = [pad(r)?, pad(s)?].concat();
                let point = [&[0x04][..], &pad(x)?, &pad(y)?].concat();
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &signature)
                    .map_err(|_| TpmError::BadSignature)
            }
            (
                Self::Rsassa { signature },
                PublicKey::Rsa {
                    exponent, modulus, ..
                },
            ) => {
                let exponent = rsa_exponent(*exponent);
                let components = RsaPublicKeyComponents {
                    n: modulus.as_slice(),
                    e: exponent.as_slice(),
                };
                components
                    .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .map_err(|_| TpmError::BadSignature)
            }
            _ => Err(TpmError::BadSignature),
        }
    }
}

fn unsupported(algorithm: u16) -> TpmError {
    TpmError::UnsupportedAlgorithm {
        structure: "TPMT_SIGNATURE",
        algorithm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::test_support::fixture;

    #[test]
    fn certify_attest_from_swtpm_parses() {
        let attest = CertifyAttest::parse(&fixture("certify-attest.bin")).unwrap();
        assert_eq!(attest.extra_data, fixture("certify-nonce.bin"));
        let key = TpmPublic::from_tpm2b(&fixture("session-key-public.bin")).unwrap();
        assert_eq!(attest.name, key.name().unwrap());
    }

    #[test]
    fn ecdsa_and_rsassa_signatures_from_swtpm_verify() {
        let ecc_ak = TpmPublic::from_tpm2b(&fixture("ak-ecc-public.bin")).unwrap();
        let signature = AkSignature::parse(&fixture("certify-signature.bin")).unwrap();
        assert!(
            signature
                .verify(&ecc_ak, &fixture("certify-attest.bin"))
                .is_ok()
        );

        let rsa_ak = TpmPublic::from_tpm2b(&fixture("ak-rsa-public.bin")).unwrap();
        let signature = AkSignature::parse(&fixture("rsa-ak-certify-signature.bin")).unwrap();
        let attest = fixture("rsa-ak-certify-attest.bin");
        assert!(signature.verify(&rsa_ak, &attest).is_ok());
        assert_eq!(
            signature.verify(&ecc_ak, &attest),
            Err(TpmError::BadSignature)
        );
    }

    #[test]
    fn ecdsa_signature_verifies_with_short_r_and_s() {
        // Re-encode the swtpm signature with r and s stripped of any leading zero and then
        // padded by hand: both forms must verify the same way.
        let ak = TpmPublic::from_tpm2b(&fixture("ak-ecc-public.bin")).unwrap();
        let attest = fixture("certify-attest.bin");
        let AkSignature::Ecdsa { r, s } =
            AkSignature::parse(&fixture("certify-signature.bin")).unwrap()
        else {
            panic!("not ECDSA");
        };
        let strip = |value: &[u8]| value.iter().skip_while(|&&b| b == 0).copied().collect();
        let short = AkSignature::Ecdsa {
            r: strip(&r),
            s: strip(&s),
        };
        assert!(short.verify(&ak, &attest).is_ok());
        let mut too_long = r.clone();
        too_long.insert(0, 1);
        let bad = AkSignature::Ecdsa { r: too_long, s };
        assert_eq!(bad.verify(&ak, &attest), Err(TpmError::BadSignature));
    }

    /// The order of the P-256 group.
    const P256_ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    /// `a - b` for 32-byte big-endian integers with `a > b`.
    fn subtract(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut digit = i16::from(a[i]) - i16::from(b[i]) - borrow;
            borrow = i16::from(digit < 0);
            if digit < 0 {
                digit += 256;
            }
            out[i] = digit as u8;
        }
        out
    }

    #[test]
    fn ecdsa_signature_with_high_s_is_accepted() {
        // (r, n - s) is as valid as (r, s), and TPMs do not normalise S to the lower half.
        let ak = TpmPublic::from_tpm2b(&fixture("ak-ecc-public.bin")).unwrap();
        let attest = fixture("certify-attest.bin");
        let AkSignature::Ecdsa { r, s } =
            AkSignature::parse(&fixture("certify-signature.bin")).unwrap()
        else {
            panic!("not ECDSA");
        };
        let s = left_pad::<32>(&s).unwrap();
        let mirrored = AkSignature::Ecdsa {
            r: r.clone(),
            s: subtract(&P256_ORDER, &s).to_vec(),
        };
        assert!(mirrored.verify(&ak, &attest).is_ok());
    }

    #[test]
    fn ecdsa_rejects_out_of_range_values() {
        let ak = TpmPublic::from_tpm2b(&fixture("ak-ecc-public.bin")).unwrap();
        let attest = fixture("certify-attest.bin");
        let cases = [
            (vec![0; 32], vec![0; 32]),
            (vec![1], vec![1]),
            (P256_ORDER.to_vec(), vec![1]),
            (vec![1], P256_ORDER.to_vec()),
        ];
        for (r, s) in cases {
            let signature = AkSignature::Ecdsa { r, s };
            assert_eq!(
                signature.verify(&ak, &attest),
                Err(TpmError::BadSignature),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn attest_rejects_bad_magic_type_trailing() {
        let attest = fixture("certify-attest.bin");
        let mut magic = attest.clone();
        magic[0] = 0xfe;
        assert_eq!(
            CertifyAttest::parse(&magic),
            Err(TpmError::WrongMagic(0xfe54_4347))
        );
        let mut quote = attest.clone();
        quote[4..6].copy_from_slice(&0x8018u16.to_be_bytes());
        assert_eq!(
            CertifyAttest::parse(&quote),
            Err(TpmError::WrongAttestationType(0x8018))
        );
        let mut longer = attest.clone();
        longer.push(0);
        assert_eq!(
            CertifyAttest::parse(&longer),
            Err(TpmError::TrailingBytes("TPMS_ATTEST"))
        );
        for len in 0..attest.len() {
            assert!(
                CertifyAttest::parse(&attest[..len]).is_err(),
                "cut to {len}"
            );
        }
    }

    #[test]
    fn signature_parse_rejects_other_hashes_and_truncation() {
        let signature = fixture("certify-signature.bin");
        let mut sha1 = signature.clone();
        sha1[2..4].copy_from_slice(&0x0004u16.to_be_bytes());
        assert_eq!(
            AkSignature::parse(&sha1),
            Err(TpmError::UnsupportedAlgorithm {
                structure: "TPMT_SIGNATURE",
                algorithm: 0x0004
            })
        );
        for len in 0..signature.len() {
            assert!(
                AkSignature::parse(&signature[..len]).is_err(),
                "cut to {len}"
            );
        }
    }
}
