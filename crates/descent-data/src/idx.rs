//! The IDX format: a big-endian magic number `0x0000 08 N` (unsigned bytes, N dimensions),
//! N big-endian u32 sizes, then the data. Raw and gzip files are both read.

use std::io::Read;
use std::path::Path;

use crate::DataError;

/// An N-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The dimensions as `60000x28x28`.
    pub fn dims_string(&self) -> String {
        self.dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    }
}

/// Reads an IDX file, decompressing it first when it is gzip (detected by its content, not
/// its name).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let raw = std::fs::read(path).map_err(DataError::io("reading", path))?;
    let named_gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if named_gz && !raw.starts_with(&[0x1f, 0x8b]) {
        let head: Vec<String> = raw.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(DataError::Gzip {
            path: path.into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "its name ends in .gz but it does not start as gzip data does (1f 8b); it \
                     starts with {}{}",
                    head.join(" "),
                    match raw.first() {
                        Some(b'<') => ", as an HTML page does: a web page saved in its place?",
                        _ => "",
                    }
                ),
            ),
        });
    }
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip_idx(&raw, path)?
    } else {
        raw
    };
    parse_idx(&bytes, path)
}

/// Deflate's largest ratio of output to input: one 258-byte match per 2 bits, about 1032 : 1
/// (zlib's technical notes). No gzip file of `n` bytes holds more than this many times `n`.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Decompresses a gzip IDX file without ever holding more than its header promises: the
/// header is read first, checked against what a gzip file of this size can hold, and the rest
/// is read up to one byte past the promised length (so that `parse_idx` can say "longer").
fn gunzip_idx(raw: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let gz_err = |source| DataError::Gzip {
        path: path.into(),
        source,
    };
    let mut decoder = flate2::read::GzDecoder::new(raw);
    // The magic number and at most 255 sizes.
    let mut out = Vec::with_capacity(4 + 4 * 255);
    (&mut decoder)
        .take(4)
        .read_to_end(&mut out)
        .map_err(gz_err)?;
    if out.len() < 4 || out[2] != 8 {
        return Ok(out); // parse_idx names what is wrong
    }
    let header = 4 + 4 * out[3] as usize;
    (&mut decoder)
        .take(header as u64 - 4)
        .read_to_end(&mut out)
        .map_err(gz_err)?;
    if out.len() < header {
        return Ok(out);
    }
    let promised = out[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)
        .try_fold(1u64, |acc, d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header as u64));
    let limit = (raw.len() as u64).saturating_mul(DEFLATE_MAX_RATIO);
    match promised {
        Some(n) if n <= limit => {
            out.reserve((n as usize).saturating_sub(header).min(raw.len() * 8));
            (&mut decoder)
                .take(n - header as u64 + 1)
                .read_to_end(&mut out)
                .map_err(gz_err)?;
            Ok(out)
        }
        _ => Err(gz_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "its IDX header promises {} bytes, but {} bytes of gzip can hold at most {limit}: \
                 the header is damaged",
                promised.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                raw.len()
            ),
        ))),
    }
}

/// Parses IDX bytes; `path` only names the source in errors.
pub fn parse_idx(bytes: &[u8], path: impl AsRef<Path>) -> Result<IdxArray, DataError> {
    let path = path.as_ref();
    let size_err = |expected: u64, what| DataError::Size {
        path: path.into(),
        what,
        expected,
        found: bytes.len() as u64,
    };
    if bytes.len() < 4 {
        return Err(size_err(4, "truncated"));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let ndims = (magic & 0xff) as usize;
    if magic & 0xffff_ff00 != 0x0000_0800 || ndims == 0 {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: magic,
        });
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(size_err(header as u64, "truncated"));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let expected = count
        .and_then(|c| c.checked_add(header as u64))
        .unwrap_or(u64::MAX);
    match (bytes.len() as u64).cmp(&expected) {
        std::cmp::Ordering::Less => Err(size_err(expected, "truncated")),
        std::cmp::Ordering::Greater => Err(size_err(expected, "longer than its header says")),
        std::cmp::Ordering::Equal => Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn reads_well_formed_files() {
        let a = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), "t").unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(a.dims_string(), "2x3");
    }

    #[test]
    fn bad_magic_is_named() {
        let mut b = idx(&[1], &[0]);
        b[2] = 0x0d; // float32 data: not ours
        let e = parse_idx(&b, "x.idx").unwrap_err();
        assert!(
            matches!(e, DataError::BadMagic { found: 0x0d01, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("x.idx"));
        assert!(matches!(
            parse_idx(b"PK\x03\x04zip", "z"),
            Err(DataError::BadMagic { .. })
        ));
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        let good = idx(&[2, 2], &[1, 2, 3, 4]);
        for cut in [0, 3, 6, 12, 15] {
            let e = parse_idx(&good[..cut], "cut").unwrap_err();
            assert!(
                matches!(
                    e,
                    DataError::Size {
                        what: "truncated",
                        ..
                    }
                ),
                "cut {cut}: {e}"
            );
        }
        let mut long = good.clone();
        long.push(9);
        assert!(matches!(
            parse_idx(&long, "long"),
            Err(DataError::Size {
                what: "longer than its header says",
                ..
            })
        ));
    }

    #[test]
    fn absurd_dimensions_do_not_overflow() {
        let b = idx(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(matches!(parse_idx(&b, "huge"), Err(DataError::Size { .. })));
    }

    #[test]
    fn gzip_files_are_read_and_broken_gzip_is_an_error() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx(&[3], &[7, 8, 9]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&bytes).unwrap();
        let gz = enc.finish().unwrap();
        let p = dir.path().join("a.gz");
        std::fs::write(&p, &gz).unwrap();
        assert_eq!(read_idx(&p).unwrap().data, vec![7, 8, 9]);
        std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
        assert!(matches!(read_idx(&p), Err(DataError::Gzip { .. })));
        assert!(matches!(
            read_idx(&dir.path().join("none")),
            Err(DataError::Io { .. })
        ));
    }

    #[test]
    fn gzip_is_never_inflated_past_its_header() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = |bytes: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(bytes).unwrap();
            enc.finish().unwrap()
        };
        let p = dir.path().join("x.gz");
        // A header promising about 10^12 bytes in a file of a few dozen: refused before reading on.
        let mut lie = idx(&[3], &[7, 8, 9]);
        lie[4..8].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
        lie.splice(8..8, 0xffu32.to_be_bytes());
        lie[3] = 2;
        std::fs::write(&p, gz(&lie)).unwrap();
        let e = read_idx(&p).unwrap_err();
        assert!(e.to_string().contains("the header is damaged"), "{e}");
        // A bomb: 3 bytes promised, 50 MB of zeros behind them; read stops one byte past.
        let mut bomb = idx(&[3], &[7, 8, 9]);
        bomb.resize(50 << 20, 0);
        std::fs::write(&p, gz(&bomb)).unwrap();
        match read_idx(&p) {
            Err(DataError::Size { what, found, .. }) => {
                assert_eq!(what, "longer than its header says");
                assert_eq!(found, 4 + 4 + 3 + 1);
            }
            other => panic!("{other:?}"),
        }
        // Not IDX inside: parse_idx's own message.
        std::fs::write(&p, gz(b"hello world")).unwrap();
        assert!(matches!(read_idx(&p), Err(DataError::BadMagic { .. })));
    }
}
