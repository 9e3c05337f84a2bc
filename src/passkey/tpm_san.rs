//! The TPM device attributes in the subject alternative name of a `tpm` attestation's AIK
//! certificate (WebAuthn Level 3 §8.3.1; TCG EK Credential Profile 2.0 §3.2.9).
//!
//! The directory name holds TPMManufacturer (2.23.133.2.1), TPMModel (2.23.133.2.2) and
//! TPMVersion (2.23.133.2.3). Certificates in the field put them in one multi-valued RDN or in
//! three RDNs, and write the manufacturer as `id:` and eight hex digits in either letter case.
//! The manufacturer must be in the TCG TPM Vendor ID Registry.

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const OID_TPM_MODEL: &str = "2.23.133.2.2";
const OID_TPM_VERSION: &str = "2.23.133.2.3";

/// TCG TPM Vendor ID Registry (version 1.07): vendor id and name.
const TCG_VENDORS: &[(u32, &str)] = &[
    (0x414D_4400, "AMD"),
    (0x4154_4D4C, "Atmel"),
    (0x4252_434D, "Broadcom"),
    (0x4353_434F, "Cisco"),
    (0x464C_5953, "Flyslice Technologies"),
    (0x524F_4343, "Fuzhou Rockchip"),
    (0x474F_4F47, "Google"),
    (0x4850_4500, "HPE"),
    (0x4849_5349, "Huawei"),
    (0x4942_4D00, "IBM"),
    (0x4946_5800, "Infineon"),
    (0x494E_5443, "Intel"),
    (0x4C45_4E00, "Lenovo"),
    (0x4D53_4654, "Microsoft"),
    (0x4E53_4D20, "National Semiconductor"),
    (0x4E54_5A00, "Nationz"),
    (0x4E54_4300, "Nuvoton Technology"),
    (0x5143_4F4D, "Qualcomm"),
    (0x534D_534E, "Samsung"),
    (0x534E_5300, "Sinosun"),
    (0x534D_5343, "SMSC"),
    (0x5354_4D20, "STMicroelectronics"),
    (0x5458_4E00, "Texas Instruments"),
    (0x5745_4300, "Winbond"),
];

/// An AIK certificate whose TPM device attributes cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmSanError {
    #[error("the AIK certificate is not valid DER")]
    Certificate,
    #[error("the AIK certificate has no subject alternative name with TPM device attributes")]
    MissingAttributes,
    #[error("TPM manufacturer {0:?} is not `id:` followed by eight hex digits")]
    MalformedManufacturer(String),
    #[error("TPM manufacturer {0:?} is not in the TCG TPM Vendor ID Registry")]
    UnregisteredManufacturer(String),
}

/// The TPM device attributes of an AIK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmDevice {
    pub manufacturer_id: u32,
    pub manufacturer: &'static str,
    pub model: String,
    pub version: String,
}

/// Reads and checks the TPM device attributes of a DER AIK certificate.
pub fn check_aik_certificate(der: &[u8]) -> Result<TpmDevice, TpmSanError> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|_| TpmSanError::Certificate)?;
    let mut found = None;
    for extension in certificate.extensions() {
        let ParsedExtension::SubjectAlternativeName(san) = extension.parsed_extension() else {
            continue;
        };
        for name in &san.general_names {
            if let GeneralName::DirectoryName(directory) = name {
                found = found.or(device_attributes(directory));
            }
        }
    }
    let (manufacturer, model, version) = found.ok_or(TpmSanError::MissingAttributes)?;
    let manufacturer_id = parse_manufacturer(&manufacturer)?;
    let name = TCG_VENDORS
        .iter()
        .find(|(id, _)| *id == manufacturer_id)
        .map(|(_, name)| *name)
        .ok_or(TpmSanError::UnregisteredManufacturer(manufacturer))?;
    Ok(TpmDevice {
        manufacturer_id,
        manufacturer: name,
        model,
        version,
    })
}

/// Collects the three attributes from every RDN of the name, whether they share one RDN or not.
fn device_attributes(name: &X509Name<'_>) -> Option<(String, String, String)> {
    let mut manufacturer = None;
    let mut model = None;
    let mut version = None;
    for attribute in name.iter_attributes() {
        let value = attribute.as_str().ok().map(str::to_owned);
        match attribute.attr_type().to_id_string().as_str() {
            OID_TPM_MANUFACTURER => manufacturer = value,
            OID_TPM_MODEL => model = value,
            OID_TPM_VERSION => version = value,
            _ => {}
        }
    }
    Some((manufacturer?, model?, version?))
}

/// Parses `id:XXXXXXXX`; the hex digits may be upper or lower case.
fn parse_manufacturer(text: &str) -> Result<u32, TpmSanError> {
    let malformed = || TpmSanError::MalformedManufacturer(text.to_owned());
    let hex = text.strip_prefix("id:").ok_or_else(malformed)?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    u32::from_str_radix(hex, 16).map_err(|_| malformed())
}
