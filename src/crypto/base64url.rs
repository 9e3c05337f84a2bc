//! Base64url without padding (RFC 7515 §2), decoded strictly.
//!
//! Padding, the `+` and `/` alphabet, white space and non-zero trailing bits are all rejected,
//! so each byte string has exactly one accepted encoding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_padding_and_standard_alphabet() {
        assert!(decode("YQ==").is_err());
        assert!(decode("+/8").is_err());
        assert!(decode("YR").is_err(), "non-zero trailing bits");
        assert_eq!(decode("YQ").ok(), Some(b"a".to_vec()));
    }
}
