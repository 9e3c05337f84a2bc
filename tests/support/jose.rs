//! Forged ECDSA signatures for the JOSE attack tests.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use p256::ecdsa::Signature;

/// The order n of the P-256 group, big-endian.
pub const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

pub fn p256_order() -> Vec<u8> {
    hex::decode(P256_ORDER).unwrap()
}

/// Encodes `value` as a 32-byte big-endian integer.
pub fn small_scalar(value: u8) -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    bytes[31] = value;
    bytes
}

/// ES256 signatures `r || s` that must never verify, built around a valid `(r, s)`: all zero,
/// r = n, s = n, r = s = 1, s = 0, the DER form of the valid signature, and wrong lengths.
pub fn forged_es256_signatures(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let (r, s) = valid.split_at(32);
    let n = p256_order();
    let der = Signature::from_slice(valid)
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec();
    vec![
        ("64 zero bytes", vec![0u8; 64]),
        ("r = n", [n.as_slice(), s].concat()),
        ("r = n, s = n", [n.as_slice(), n.as_slice()].concat()),
        ("r = s = 1", [small_scalar(1), small_scalar(1)].concat()),
        ("s = 0", [r, &[0u8; 32]].concat()),
        ("s = n", [r, n.as_slice()].concat()),
        ("DER form", der),
        ("63 bytes", valid[..63].to_vec()),
        ("65 bytes", [valid, &[0]].concat()),
        ("empty", Vec::new()),
    ]
}

/// Computes (r, n − s), the other valid ECDSA signature of the same message.
pub fn high_s_twin(signature: &[u8]) -> Vec<u8> {
    let signature = Signature::from_slice(signature).unwrap();
    let twin = Signature::from_scalars(signature.r(), -signature.s()).unwrap();
    twin.to_vec()
}
