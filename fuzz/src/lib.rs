//! Pieces shared by the fuzz targets: fixed signing keys, and the layout of inputs that the
//! targets turn into signed tokens.
//!
//! The fuzzer cannot produce a valid signature, so a target that only parses raw input never
//! reaches the code after signature verification. In signed mode the target signs a
//! fuzzer-chosen header and payload with a fixed key, which reaches that code and lets the
//! target check that a genuine signature verifies and a tampered one does not.

use std::sync::LazyLock;

use aws_lc_rs::signature::RsaKeyPair;
use devbound::client::SessionKey;
use devbound::crypto::{Algorithm, Jwk, PublicKey, base64url};
use devbound::store::BoundKey;
use p256::ecdsa::SigningKey;

/// Private scalars of the two P-256 fixture keys. They are valid scalars (non-zero and below
/// the group order) and are not secret: they exist only to make fuzz runs reproducible.
const P256_SCALARS: [[u8; 32]; 2] = [[0x11; 32], [0x22; 32]];

/// A 2048-bit RSA fixture key in PKCS#8 DER, made for fuzzing only with `openssl genpkey` and
/// `openssl pkcs8 -topk8 -nocrypt`.
const RSA_PKCS8: &[u8] = include_bytes!("../fixtures/rsa2048-fuzz-only.pk8");

/// Flag bits of the first input byte.
const FLAG_RSA: u8 = 0b001;
const FLAG_SIGNED: u8 = 0b010;
const FLAG_EMBED_JWK: u8 = 0b100;

/// A fixture key with its private half and its validated public forms.
pub struct FixedKey {
    pub signer: SessionKey,
    pub jwk: Jwk,
    pub public: PublicKey,
}

impl FixedKey {
    fn new(signer: SessionKey) -> Self {
        let jwk = Jwk::from_value(&signer.public_jwk()).expect("fixture public JWK is valid");
        let public = jwk.parse_key().expect("fixture public key parses");
        Self {
            signer,
            jwk,
            public,
        }
    }

    pub fn alg(&self) -> Algorithm {
        self.signer.algorithm()
    }

    /// Returns the key as a session stores it after registration.
    pub fn bound(&self) -> BoundKey {
        BoundKey {
            alg: self.alg(),
            jwk: self.jwk.clone(),
        }
    }
}

/// The fixture keys. `p256_unused` never signs anything.
pub struct Keys {
    pub p256: FixedKey,
    pub p256_unused: FixedKey,
    pub rsa: FixedKey,
}

impl Keys {
    pub fn signer(&self, alg: Algorithm) -> &FixedKey {
        match alg {
            Algorithm::Es256 => &self.p256,
            Algorithm::Rs256 => &self.rsa,
        }
    }

    /// Returns every fixture key, the unused one included.
    pub fn all(&self) -> [&FixedKey; 3] {
        [&self.p256, &self.p256_unused, &self.rsa]
    }
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let p256 = |scalar: &[u8; 32]| {
        let key = SigningKey::from_slice(scalar).expect("fixture P-256 scalar is valid");
        FixedKey::new(SessionKey::Es256(Box::new(key)))
    };
    let rsa = RsaKeyPair::from_pkcs8(RSA_PKCS8).expect("fixture RSA key parses");
    Keys {
        p256: p256(&P256_SCALARS[0]),
        p256_unused: p256(&P256_SCALARS[1]),
        rsa: FixedKey::new(SessionKey::Rs256(Box::new(rsa))),
    }
});

pub fn keys() -> &'static Keys {
    &KEYS
}

/// A fuzz input for the token targets.
///
/// The first byte contains flags: bit 0 picks the RSA key instead of P-256, bit 1 selects signed
/// mode, and bit 2 embeds the signing key's public JWK in the header. In raw mode the rest of
/// the input is the token as sent. In signed mode the rest is the header, a newline, and the
/// payload, and the target signs them. The ASCII digits `0` to `7` set the same flags, so
/// seed files can be plain text.
pub enum TokenInput<'a> {
    Raw(&'a str),
    Signed(SignedInput<'a>),
}

/// The parts of a token that the target signs itself.
pub struct SignedInput<'a> {
    pub alg: Algorithm,
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub embed_jwk: bool,
}

impl<'a> TokenInput<'a> {
    /// Splits `data` as described on [`TokenInput`]. Returns `None` for an empty input or a raw
    /// token that is not UTF-8, because `CompactJws::parse` takes a `&str`.
    pub fn read(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        if flags & FLAG_SIGNED == 0 {
            return std::str::from_utf8(rest).ok().map(Self::Raw);
        }

        let alg = if flags & FLAG_RSA == 0 {
            Algorithm::Es256
        } else {
            Algorithm::Rs256
        };
        let (header, payload) = match rest.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (&rest[..newline], &rest[newline + 1..]),
            None => (rest, &[][..]),
        };
        Some(Self::Signed(SignedInput {
            alg,
            header,
            payload,
            embed_jwk: flags & FLAG_EMBED_JWK != 0,
        }))
    }
}

impl SignedInput<'_> {
    /// Builds the compact JWS, with the `jwk` member set to the signer's public key when
    /// `embed_jwk` is set and the header is a JSON object. Returns the token and the signature
    /// bytes.
    pub fn sign(&self, keys: &Keys) -> (String, Vec<u8>) {
        let signer = keys.signer(self.alg);
        let header = if self.embed_jwk {
            with_jwk(self.header, signer)
        } else {
            self.header.to_vec()
        };
        let signing_input = format!(
            "{}.{}",
            base64url::encode(header),
            base64url::encode(self.payload)
        );
        let signature = signer
            .signer
            .sign(signing_input.as_bytes())
            .expect("fixture key signs");
        let token = format!("{signing_input}.{}", base64url::encode(&signature));
        (token, signature)
    }
}

fn with_jwk(header: &[u8], signer: &FixedKey) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut members)) = serde_json::from_slice(header) else {
        return header.to_vec();
    };
    members.insert("jwk".to_owned(), signer.signer.public_jwk());
    serde_json::Value::Object(members).to_string().into_bytes()
}

/// Returns `token` with its signature part replaced by `signature` with the last byte flipped.
pub fn tamper(token: &str, signature: &[u8]) -> String {
    let mut forged = signature.to_vec();
    match forged.last_mut() {
        Some(last) => *last ^= 0x01,
        None => forged.push(0),
    }
    let signing_input = token.rsplit_once('.').map_or(token, |(input, _)| input);
    format!("{signing_input}.{}", base64url::encode(forged))
}
