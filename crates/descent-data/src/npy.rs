//! NumPy arrays: `.npy` files and `.npz` archives (with the `npyz` and `zip` crates; see
//! docs/data.md for the choice), little- or big-endian floats, integers and bytes, C or
//! Fortran order, read as f32 in C order, and data sets built from an inputs array and a
//! targets array.

use std::io::Read;
use std::path::Path;

use npyz::{DType, NpyFile, Order, TypeChar};

use crate::npy_header;
use crate::{DataError, Dataset, Task};

/// An array read from a `.npy` file or an `.npz` entry: its shape, its values as f32 in C
/// (row-major) order, and what it held.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Sizes, outermost first.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
    /// NumPy's type string (`<f4`, `|u1`, `>i8`, ...).
    pub dtype: String,
    /// Whether the values are integers (an integer or byte dtype).
    pub integral: bool,
}

fn err(what: &str, why: impl std::fmt::Display) -> DataError {
    DataError::Text {
        what: what.to_string(),
        why: why.to_string(),
    }
}

/// The length of a `.npy` file's preamble and header together, as the file states it (`None`
/// when it does not start as a `.npy` file does; npyz names that).
fn header_len(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(b"\x93NUMPY")?;
    match rest {
        [1, _, a, b, ..] => Some(10 + u16::from_le_bytes([*a, *b]) as u64),
        [2 | 3, _, a, b, c, d, ..] => Some(12 + u32::from_le_bytes([*a, *b, *c, *d]) as u64),
        _ => None,
    }
}

/// The first line of npyz's message, at most 200 characters: its parse errors quote the
/// whole header.
fn first_line(e: &std::io::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default().trim_end();
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

/// NumPy's own limit on a header's length (`max_header_size`): a plain array's header is a
/// short dict; a longer one is damaged or crafted.
const MAX_HEADER: u64 = 10_000;

/// The header's dict as text (without the trailing newline), given the preamble and header's
/// length `len` as `header_len` read it, and checked to lie within `bytes`.
fn header_text(bytes: &[u8], len: u64) -> &[u8] {
    let start = if bytes.get(6) == Some(&1) { 10 } else { 12 };
    let text = bytes.get(start..len as usize).unwrap_or_default();
    text.strip_suffix(b"\n").unwrap_or(text)
}

/// Reads one NumPy array from `reader`; `what` names it in errors.
pub fn parse_npy(mut reader: impl Read, what: &str) -> Result<NpyArray, DataError> {
    // The bytes first: the header's shape is checked against them before any buffer of that
    // size is made (npyz allocates the whole array from the header).
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| err(what, format!("cannot read it ({e})")))?;
    // npyz allocates the header's stated length before reading it, and parses and multiplies
    // what it says unchecked: the length, the dict and its sizes are checked here first.
    if let Some(len) = header_len(&bytes) {
        if len > MAX_HEADER {
            return Err(err(
                what,
                format!(
                    "has a header that says it is {len} bytes long; NumPy writes at most \
                     {MAX_HEADER}: its header is damaged"
                ),
            ));
        }
        if len > bytes.len() as u64 {
            return Err(err(
                what,
                format!(
                    "has a header that says it is {len} bytes long in a file of {} bytes: it is \
                     truncated or its header is damaged",
                    bytes.len()
                ),
            ));
        }
        let header = npy_header::parse(header_text(&bytes, len)).map_err(|why| {
            err(
                what,
                format!("has a header that is not the dict NumPy writes: {why}"),
            )
        })?;
        if header.descr.is_none() {
            return Err(err(
                what,
                "holds a structured dtype (a list of fields); give a plain array of numbers",
            ));
        }
        let elements = header
            .shape
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1u64, |n, &d| n.checked_mul(d));
        if elements.is_none() {
            return Err(err(
                what,
                format!(
                    "has a header of shape {:?}, more elements than any file can hold: its \
                     header is damaged",
                    header.shape
                ),
            ));
        }
    }
    let npy = NpyFile::new(&bytes[..])
        .map_err(|e| err(what, format!("not a NumPy .npy array ({})", first_line(&e))))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let DType::Plain(ts) = npy.dtype() else {
        return Err(err(
            what,
            format!(
                "holds a structured dtype ({}); give a plain array of numbers",
                npy.dtype().descr()
            ),
        ));
    };
    let need = shape
        .iter()
        .try_fold(ts.size_field(), |n, &d| n.checked_mul(d as u64));
    if need.is_none_or(|n| n > bytes.len() as u64) {
        return Err(err(
            what,
            format!(
                "has a header of shape {shape:?} ({} bytes each) but holds {} bytes in all: it \
                 is truncated or its header is damaged",
                ts.size_field(),
                bytes.len()
            ),
        ));
    }
    let order = npy.order();
    let dtype = ts.to_string();
    let bad = || {
        err(
            what,
            format!(
                "has dtype {dtype}; descent reads floats (f4, f8), signed and unsigned integers \
                 (1 to 8 bytes) and booleans"
            ),
        )
    };
    let read = |e: std::io::Error| err(what, format!("cannot read its values ({e})"));
    let (values, integral): (Vec<f32>, bool) = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => (npy.into_vec::<f32>().map_err(read)?, false),
        (TypeChar::Float, 8) => (conv(npy.into_vec::<f64>().map_err(read)?), false),
        (TypeChar::Uint, 1) => (conv(npy.into_vec::<u8>().map_err(read)?), true),
        (TypeChar::Uint, 2) => (conv(npy.into_vec::<u16>().map_err(read)?), true),
        (TypeChar::Uint, 4) => (conv(npy.into_vec::<u32>().map_err(read)?), true),
        (TypeChar::Uint, 8) => (conv(npy.into_vec::<u64>().map_err(read)?), true),
        (TypeChar::Int, 1) => (conv(npy.into_vec::<i8>().map_err(read)?), true),
        (TypeChar::Int, 2) => (conv(npy.into_vec::<i16>().map_err(read)?), true),
        (TypeChar::Int, 4) => (conv(npy.into_vec::<i32>().map_err(read)?), true),
        (TypeChar::Int, 8) => (conv(npy.into_vec::<i64>().map_err(read)?), true),
        (TypeChar::Bool, 1) => (conv(npy.into_vec::<bool>().map_err(read)?), true),
        _ => return Err(bad()),
    };
    let values = match order {
        Order::C => values,
        Order::Fortran => fortran_to_c(&values, &shape),
    };
    Ok(NpyArray {
        shape,
        values,
        dtype,
        integral,
    })
}

/// Numbers as f32 (integers above 2^24 lose their last bits; the caller refuses labels that
/// large).
fn conv<T: AsF64>(v: Vec<T>) -> Vec<f32> {
    v.into_iter().map(|x| x.as_f64() as f32).collect()
}

trait AsF64: Copy {
    fn as_f64(self) -> f64;
}

macro_rules! as_f64 {
    ($($t:ty),*) => {$(impl AsF64 for $t { fn as_f64(self) -> f64 { self as f64 } })*};
}
as_f64!(f64, u8, u16, u32, u64, i8, i16, i32, i64);

impl AsF64 for bool {
    fn as_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

/// The values of a column-major array in row-major order.
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = values.len();
    let mut out = vec![0.0; n];
    // Column-major strides: the first axis varies fastest.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    for o in out.iter_mut() {
        let f: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        *o = values[f];
        // The next row-major index: the last axis varies fastest.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    let file = std::fs::File::open(path).map_err(DataError::io("reading", path))?;
    parse_npy(std::io::BufReader::new(file), &path.display().to_string())
}

/// Reads every array of an `.npz` archive, by name (the entry's name without `.npy`), in the
/// archive's order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>, DataError> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(DataError::io("reading", path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| err(&what, format!("not a NumPy .npz archive ({e})")))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| err(&what, format!("cannot read entry {i} ({e})")))?;
        let name = entry.name().to_string();
        let Some(array) = name.strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        let what = format!("{what}: array `{array}`");
        // The entry says how large it is; a deflate stream cannot grow more than 1032 : 1, so
        // a larger claim is damage, and nothing past the claim is read (a decompression bomb
        // stops there).
        let (size, packed) = (entry.size(), entry.compressed_size());
        if size > packed.saturating_mul(1032).saturating_add(1032) {
            return Err(err(
                &what,
                format!(
                    "claims {size} bytes from {packed} compressed, more than deflate can \
                     hold: the archive is damaged"
                ),
            ));
        }
        let mut bytes = Vec::new();
        entry
            .take(size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| err(&what, format!("cannot decompress it ({e})")))?;
        if bytes.len() as u64 != size {
            return Err(err(
                &what,
                format!(
                    "holds {}{} bytes where the archive says {size}: the archive is damaged",
                    if bytes.len() as u64 > size {
                        "more than "
                    } else {
                        ""
                    },
                    bytes.len().min(size as usize)
                ),
            ));
        }
        let a = parse_npy(&bytes[..], &what)?;
        out.push((array, a));
    }
    if out.is_empty() {
        return Err(err(&what, "holds no .npy array"));
    }
    Ok(out)
}

/// A data set from an inputs array `x` (`N x ...`) and a targets array `y` (`N`, or `N x K`
/// values): class indices when `task` is [`Task::Classify`] (integers from 0; `None` decides:
/// an integral `y` of one value per example is classes), values otherwise. `what` names the
/// arrays in errors.
pub fn arrays_dataset(
    x: NpyArray,
    y: NpyArray,
    task: Option<Task>,
    what: &str,
) -> Result<Dataset, DataError> {
    let n = x.shape.first().copied().unwrap_or(0);
    if x.shape.is_empty() || n == 0 {
        return Err(err(
            what,
            format!(
                "the inputs have shape {:?}: give N x ... with N > 0",
                x.shape
            ),
        ));
    }
    let ny = y.shape.first().copied().unwrap_or(0);
    if ny != n {
        return Err(err(
            what,
            format!(
                "the inputs hold {n} examples (shape {:?}) but the targets {ny} (shape {:?}): \
                 they must pair up one to one",
                x.shape, y.shape
            ),
        ));
    }
    let per: usize = y.shape[1..].iter().product();
    let shape: Vec<usize> = match &x.shape[1..] {
        [] => vec![1],
        [h, w] => vec![1, *h, *w],
        dims => dims.to_vec(),
    };
    if let Some(i) = x.values.iter().position(|v| !v.is_finite()) {
        let f: usize = shape.iter().product();
        return Err(err(
            what,
            format!(
                "input value {} of example {} is {}: inputs must be finite",
                i % f,
                i / f,
                x.values[i]
            ),
        ));
    }
    let classify = match task {
        Some(t) => t == Task::Classify,
        None => y.integral && per == 1,
    };
    if !classify {
        if let Some(i) = y.values.iter().position(|v| !v.is_finite()) {
            return Err(err(
                what,
                format!("target {i} is {}: targets must be finite", y.values[i]),
            ));
        }
        return Dataset::regression(&shape, x.values, y.values, per.max(1), false)
            .map_err(|e| err(what, e));
    }
    if per != 1 {
        return Err(err(
            what,
            format!(
                "class targets have shape {:?}; give one class per example (N)",
                y.shape
            ),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for (i, &v) in y.values.iter().enumerate() {
        if !(v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0) {
            return Err(err(
                what,
                format!("target {i} is {v}: classes are integers from 0"),
            ));
        }
        labels.push(v as u32);
    }
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    if labels.iter().all(|&l| l == labels[0]) {
        return Err(err(
            what,
            "the targets hold a single class: a classifier needs two or more",
        ));
    }
    Dataset::from_vecs(&shape, x.values, labels, classes).map_err(|e| err(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .npy file of `descr` (e.g. `<f4`) and `shape`, with the given raw value bytes.
    fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn every_dtype_and_both_orders_round_trip() {
        let vals = [1.5f32, -2.0, 3.25, 4.0, 5.0, -6.5];
        let le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let be64: Vec<u8> = vals
            .iter()
            .flat_map(|v| (*v as f64).to_be_bytes())
            .collect();
        let a = parse_npy(&npy("<f4", false, &[2, 3], &le)[..], "a").unwrap();
        assert_eq!(
            (a.shape.clone(), a.values.clone()),
            (vec![2, 3], vals.to_vec())
        );
        let b = parse_npy(&npy(">f8", false, &[2, 3], &be64)[..], "b").unwrap();
        assert_eq!(b.values, vals.to_vec());
        assert!(!b.integral);
        // Fortran order: the same 2x3 matrix stored column by column.
        let cols = [1.5f32, 4.0, -2.0, 5.0, 3.25, -6.5];
        let f: Vec<u8> = cols.iter().flat_map(|v| v.to_le_bytes()).collect();
        let c = parse_npy(&npy("<f4", true, &[2, 3], &f)[..], "c").unwrap();
        assert_eq!(c.values, vals.to_vec());
        let ints = [7i64, -3, 1 << 40];
        let i8le: Vec<u8> = ints.iter().flat_map(|v| v.to_le_bytes()).collect();
        let i8be: Vec<u8> = ints.iter().flat_map(|v| v.to_be_bytes()).collect();
        for bytes in [
            npy("<i8", false, &[3], &i8le),
            npy(">i8", false, &[3], &i8be),
        ] {
            let d = parse_npy(&bytes[..], "d").unwrap();
            assert_eq!(d.values, vec![7.0, -3.0, (1u64 << 40) as f32]);
            assert!(d.integral);
        }
        let u = parse_npy(&npy("|u1", false, &[2, 2], &[0, 255, 7, 9])[..], "u").unwrap();
        assert_eq!(u.values, vec![0.0, 255.0, 7.0, 9.0]);
        let e = parse_npy(&npy("<c8", false, &[1], &[0; 8])[..], "z").unwrap_err();
        assert!(e.to_string().contains("has dtype <c8"), "{e}");
        // A header promising far more than the file holds is refused before any allocation
        // of that size (found by fuzzing: 20 bytes asked for 662 MB).
        let e = parse_npy(&npy("<f4", false, &[1 << 40, 3], &[0; 8])[..], "big").unwrap_err();
        assert!(
            e.to_string().contains("truncated or its header is damaged"),
            "{e}"
        );
        // Sizes whose product overflows: npyz multiplies them unchecked (CI's debug build
        // panicked here), and so it does the strides of a shape with a zero in it.
        for shape in [[usize::MAX, 3, 1], [0, 1 << 40, 1 << 40]] {
            let e = parse_npy(&npy("<f4", false, &shape, &[0; 8])[..], "huge").unwrap_err();
            assert!(
                e.to_string()
                    .contains("more elements than any file can hold"),
                "{e}"
            );
        }
        // A header longer than NumPy ever writes.
        let mut padded = npy("<f4", false, &[2], &[0; 8]);
        padded.splice(8..10, 20_000u16.to_le_bytes());
        padded.extend(vec![b' '; 20_000]);
        let e = parse_npy(&padded[..], "padded").unwrap_err();
        assert!(e.to_string().contains("NumPy writes at most 10000"), "{e}");
        // A header length past the end of the file (fuzzing: 122 bytes asked for 662 MB).
        let mut long = npy("<f4", false, &[2], &[0; 8]);
        long[6] = 2;
        long.splice(8..10, [0x58, 0, 0x7b, 0x27]);
        let e = parse_npy(&long[..], "long").unwrap_err();
        assert!(
            e.to_string().contains("says it is 662372452 bytes long"),
            "{e}"
        );
        // Unclosed brackets make npyz's parser backtrack exponentially (fuzzing found 217
        // bytes that ran for minutes): the header is read strictly first, refused at once.
        let mut deep = npy("<f4", false, &[2], &[0; 8]);
        deep.splice(11..11, b"'x': ".iter().copied().chain([b'['; 90]));
        let len = u16::from_le_bytes([deep[8], deep[9]]) + 95;
        deep.splice(8..10, len.to_le_bytes());
        let e = parse_npy(&deep[..], "deep").unwrap_err();
        assert!(
            e.to_string().contains("not the dict NumPy writes: key 'x'"),
            "{e}"
        );
        let mut s = npy("[('a', '<f4')]", false, &[1], &[0; 4]);
        let at = s.iter().position(|&b| b == b'[').unwrap();
        s.splice(at - 1..at + 15, *b"[('a', '<f4')]  ");
        let e = parse_npy(&s[..], "fields").unwrap_err();
        assert!(e.to_string().contains("structured dtype"), "{e}");
        let e = parse_npy(&b"not numpy"[..], "junk").unwrap_err();
        assert!(e.to_string().contains("not a NumPy .npy array"), "{e}");
        // A truncated file.
        let short = npy("<f4", false, &[2, 3], &le[..10]);
        assert!(parse_npy(&short[..], "short").is_err());
    }

    #[test]
    fn arrays_pair_into_classes_or_values() {
        let arr = |shape: Vec<usize>, values: Vec<f32>, integral| NpyArray {
            shape,
            values,
            dtype: String::new(),
            integral,
        };
        let x = || arr(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], false);
        let d = arrays_dataset(x(), arr(vec![3], vec![2.0, 0.0, 1.0], true), None, "t").unwrap();
        assert_eq!(
            (d.labels(), d.classes(), d.shape()),
            (&[2, 0, 1][..], 3, &[2][..])
        );
        assert_eq!(d.images(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = arrays_dataset(x(), arr(vec![3, 2], vec![0.5; 6], false), None, "t").unwrap();
        assert!(r.is_regression());
        assert_eq!((r.targets_per_example(), r.values().len()), (2, 6));
        let cases = [
            (arr(vec![2], vec![0.0, 1.0], true), "hold 3 examples", None),
            (
                arr(vec![3], vec![0.0, -1.0, 1.0], true),
                "target 1 is -1",
                None,
            ),
            (
                arr(vec![3], vec![0.0, 0.5, 1.0], false),
                "target 1 is 0.5",
                Some(Task::Classify),
            ),
            (arr(vec![3], vec![1.0; 3], true), "a single class", None),
        ];
        for (y, want, task) in cases {
            let e = arrays_dataset(x(), y, task, "t").unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let mut bad = x();
        bad.values[3] = f32::NAN;
        let e = arrays_dataset(bad, arr(vec![3], vec![0.0, 1.0, 1.0], true), None, "t");
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("value 1 of example 1 is NaN"));
    }

    #[test]
    fn npz_entries_are_read_no_further_than_they_claim() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        let array = npy("<f4", false, &[2], &[0; 8]);
        let archive = |body: &[u8]| {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("x.npy", opts).unwrap();
            z.write_all(body).unwrap();
            z.finish().unwrap().into_inner()
        };
        // Overwrites the uncompressed size in the local header (offset 22) and the central
        // directory (offset 24).
        let lie = |mut zip: Vec<u8>, size: u32| {
            for (sig, at) in [(0x0403_4b50u32, 22), (0x0201_4b50, 24)] {
                let i = zip.windows(4).position(|w| w == sig.to_le_bytes()).unwrap();
                zip[i + at..i + at + 4].copy_from_slice(&size.to_le_bytes());
            }
            zip
        };
        std::fs::write(&path, archive(&array)).unwrap();
        assert_eq!(read_npz(&path).unwrap()[0].1.values, vec![0.0, 0.0]);
        // A bomb: 20 MB of zeros behind a header that says 136 bytes. Read stops at 137.
        let mut bomb = array.clone();
        bomb.resize(20 << 20, 0);
        std::fs::write(&path, lie(archive(&bomb), array.len() as u32)).unwrap();
        let e = read_npz(&path).unwrap_err().to_string();
        assert!(
            e.contains("holds more than") && e.contains("archive is damaged"),
            "{e}"
        );
        // A claim that no deflate stream of this size can meet.
        std::fs::write(&path, lie(archive(&array), u32::MAX)).unwrap();
        let e = read_npz(&path).unwrap_err().to_string();
        assert!(e.contains("more than deflate can hold"), "{e}");
    }
}
