//! Names of common authenticator models by AAGUID, so that a person can tell passkeys apart.
//!
//! The operator's metadata BLOB takes precedence. The values below are the AAGUIDs these
//! vendors publish for their passkey providers and security keys.

use uuid::Uuid;

const KNOWN: &[(&str, &str)] = &[
    (
        "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4",
        "Google Password Manager",
    ),
    ("adce0002-35bc-c60a-648b-0b25f1f05503", "Chrome on Mac"),
    ("fbfc3007-154e-4ecc-8c0b-6e020557d7bd", "iCloud Keychain"),
    ("08987058-cadc-4b81-b6e1-30de50dcbe96", "Windows Hello"),
    ("9ddd1817-af5a-4672-a2b9-3e3dd95000a9", "Windows Hello"),
    ("6028b017-b1d4-4c02-b4b3-afcdafc96bb2", "Windows Hello"),
    ("bada5566-a7aa-401f-bd96-45619a55120d", "1Password"),
    ("d548826e-79b4-db40-a3d8-11116f7e8349", "Bitwarden"),
    ("cb69481e-8ff7-4039-93ec-0a2729a154a8", "YubiKey 5 Series"),
    ("ee882879-721c-4913-9775-3dfcce97072a", "YubiKey 5 Series"),
    (
        "fa2b99dc-9e39-4257-8f92-4a30d23c4118",
        "YubiKey 5 Series with NFC",
    ),
];

/// Returns the model name for an AAGUID, if it is one of the well-known ones.
pub fn known_name(aaguid: &Uuid) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(text, _)| Uuid::parse_str(text).is_ok_and(|known| known == *aaguid))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_are_named() {
        let google = Uuid::parse_str("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4").unwrap();
        assert_eq!(known_name(&google), Some("Google Password Manager"));
        assert_eq!(known_name(&Uuid::nil()), None);
    }

    #[test]
    fn every_listed_aaguid_parses() {
        for (text, _) in KNOWN {
            assert!(Uuid::parse_str(text).is_ok(), "{text}");
        }
    }
}
