//! TFRecord framing, as TensorBoard's event files use it: each record is its length (u64,
//! little-endian), the masked CRC32C of those 8 bytes, the data, and the masked CRC32C of
//! the data.

use std::io::{self, Write};

/// CRC32C masked as TFRecord masks it (so a CRC of data that holds CRCs stays useful).
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one record holding `data`.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// Why the bytes of an event file are not a sequence of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside the record starting at this offset (a writer still running, or
    /// stopped mid-write).
    Truncated(u64),
    /// A checksum does not match at this offset.
    BadChecksum(u64),
}

/// Splits an event file's bytes into its records' data.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>, Damage> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let start = at as u64;
        let head = bytes.get(at..at + 12).ok_or(Damage::Truncated(start))?;
        let (len, crc) = head.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Err(Damage::BadChecksum(start));
        }
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let n = usize::try_from(n).map_err(|_| Damage::Truncated(start))?;
        let body = at + 12;
        let end = body
            .checked_add(n)
            .and_then(|e| e.checked_add(4))
            .filter(|&e| e <= bytes.len())
            .ok_or(Damage::Truncated(start))?;
        let data = &bytes[body..body + n];
        if masked_crc(data).to_le_bytes() != bytes[body + n..end] {
            return Err(Damage::BadChecksum(start));
        }
        out.push(data);
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnolis_and_masked_as_tfrecord_masks_it() {
        // The check value of CRC-32C (RFC 3720's polynomial).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, worked out by hand.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn records_round_trip_and_damage_is_found() {
        let mut bytes = Vec::new();
        write_record(&mut bytes, b"first").unwrap();
        write_record(&mut bytes, b"").unwrap();
        write_record(&mut bytes, b"third record").unwrap();
        let recs = read_records(&bytes).unwrap();
        assert_eq!(recs, vec![&b"first"[..], b"", b"third record"]);
        assert_eq!(
            read_records(&bytes[..bytes.len() - 1]),
            Err(Damage::Truncated(37))
        );
        let mut bad = bytes.clone();
        bad[14] ^= 1; // inside "first"
        assert_eq!(read_records(&bad), Err(Damage::BadChecksum(0)));
        let mut bad = bytes;
        bad[21] ^= 1; // the second record's length
        assert_eq!(read_records(&bad), Err(Damage::BadChecksum(21)));
    }
}
