//! A reader for the TPM's marshalled structures: big-endian integers and `TPM2B_` buffers with a
//! `u16` size in front (TPM 2.0 Library Specification, Part 2 §10.4). Every read is bounds-checked,
//! so hostile input ends in an error, never a panic.

use super::error::TpmError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    structure: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes` as the named structure, which the errors then name.
    pub(crate) fn new(bytes: &'a [u8], structure: &'static str) -> Self {
        Self { bytes, structure }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], TpmError> {
        if len > self.bytes.len() {
            return Err(TpmError::Truncated(self.structure));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TpmError> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| TpmError::Truncated(self.structure))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, TpmError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, TpmError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, TpmError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a `TPM2B_` buffer: a `u16` size and that many bytes.
    pub(crate) fn sized(&mut self) -> Result<&'a [u8], TpmError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Ends the structure, which must have no bytes left.
    pub(crate) fn finish(self) -> Result<(), TpmError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(TpmError::TrailingBytes(self.structure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_big_endian_and_sized_buffers() {
        let mut reader = Reader::new(&[0x01, 0x02, 0x00, 0x02, 0xaa, 0xbb, 0x07], "TEST");
        assert_eq!(reader.u16().unwrap(), 0x0102);
        assert_eq!(reader.sized().unwrap(), &[0xaa, 0xbb]);
        assert_eq!(reader.u8().unwrap(), 7);
        assert!(reader.finish().is_ok());
    }

    #[test]
    fn reader_rejects_short_input_and_leftovers() {
        let mut reader = Reader::new(&[0x00, 0x05, 0x01], "TEST");
        assert_eq!(reader.sized(), Err(TpmError::Truncated("TEST")));

        let mut reader = Reader::new(&[0x00, 0x01, 0x02], "TEST");
        assert_eq!(reader.u32(), Err(TpmError::Truncated("TEST")));
        assert_eq!(reader.u16().unwrap(), 1);
        assert_eq!(reader.finish(), Err(TpmError::TrailingBytes("TEST")));
    }
}
