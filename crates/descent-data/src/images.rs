//! Folders of labelled pictures: one sub-folder per class (sorted by name, as torchvision's
//! `ImageFolder`), PNG and JPEG files decoded with the `image` crate, as grey or RGB, resized
//! to one size or refused when sizes differ. Pixels become values in [0, 1], channels first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset};

/// How pictures become examples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOptions {
    /// Resize every picture to `(height, width)`; `None`: every picture must have the first
    /// one's size.
    pub size: Option<(u32, u32)>,
    /// 1 (grey) or 3 (RGB); `None`: grey when every picture is grey, else RGB.
    pub channels: Option<usize>,
}

/// A folder of pictures read as a data set.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    /// The examples (`channels x height x width` values in [0, 1]) and their classes.
    pub data: Dataset,
    /// The class names (the sub-folders), by index.
    pub classes: Vec<String>,
    /// Each example's file.
    pub files: Vec<PathBuf>,
    /// Files left out for not being PNG or JPEG.
    pub skipped: usize,
}

/// The file extensions read as pictures.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn err(what: &Path, why: impl std::fmt::Display) -> DataError {
    DataError::Text {
        what: what.display().to_string(),
        why: why.to_string(),
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Sorted entries of `dir` that are folders (`dirs`) or files, hidden ones left out.
fn entries(dir: &Path, dirs: bool) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(DataError::io("reading the folder", dir))?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir() == dirs
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A decoded picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// `channels x height x width` values in [0, 1].
    pub values: Vec<f32>,
    /// The picture's own `(height, width)`, before any resizing.
    pub size: (u32, u32),
}

/// A picture's reader, its format found from its bytes.
fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>, DataError> {
    image::ImageReader::open(path)
        .map_err(DataError::io("reading", path))?
        .with_guessed_format()
        .map_err(DataError::io("reading", path))
}

fn unreadable(path: &Path, e: image::ImageError) -> DataError {
    err(path, format!("is not a readable PNG or JPEG picture ({e})"))
}

/// Refuses a picture whose header states more pixels than its file can hold, before any
/// buffer of that size is made: neither PNG's deflate (1032 : 1 at most) nor JPEG's Huffman
/// coding (about 2 bits per 8 x 8 block) packs more than 1032 pixels into a byte.
fn check_size(path: &Path) -> Result<(), DataError> {
    let len = std::fs::metadata(path)
        .map_err(DataError::io("reading", path))?
        .len();
    let (w, h) = reader(path)?
        .into_dimensions()
        .map_err(|e| unreadable(path, e))?;
    let most = len.saturating_mul(1032).saturating_add(1 << 16);
    if w as u64 * h as u64 > most {
        return Err(err(
            path,
            format!(
                "says it is {w} x {h} pixels but holds only {len} bytes, fewer than any PNG or \
                 JPEG of that size needs: the file is damaged"
            ),
        ));
    }
    Ok(())
}

/// Decodes one picture into `channels x height x width` values in [0, 1], resized to `size`
/// `(height, width)` when given.
pub fn decode_image(
    path: &Path,
    channels: usize,
    size: Option<(u32, u32)>,
) -> Result<Decoded, DataError> {
    check_size(path)?;
    let img = reader(path)?.decode().map_err(|e| unreadable(path, e))?;
    let own = (img.height(), img.width());
    let img = match size {
        Some((h, w)) if (h, w) != own => {
            img.resize_exact(w, h, image::imageops::FilterType::Triangle)
        }
        _ => img,
    };
    let (h, w) = (img.height() as usize, img.width() as usize);
    let plane = h * w;
    let mut out = vec![0f32; channels * plane];
    match channels {
        1 => {
            for (o, p) in out.iter_mut().zip(img.to_luma8().as_raw()) {
                *o = *p as f32 / 255.0;
            }
        }
        _ => {
            for (i, px) in img.to_rgb8().as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = px[c] as f32 / 255.0;
                }
            }
        }
    }
    Ok(Decoded {
        values: out,
        size: own,
    })
}

/// Whether a picture is grey, from its header's colour type (its pixels are not decoded).
fn probe_grey(path: &Path) -> Result<bool, DataError> {
    use image::ImageDecoder;
    let decoder = reader(path)?
        .into_decoder()
        .map_err(|e| unreadable(path, e))?;
    Ok(!decoder.color_type().has_color())
}

/// Reads `dir`: each sub-folder is a class holding its PNG and JPEG pictures.
pub fn read_image_folder(dir: &Path, opts: &ImageOptions) -> Result<ImageFolder, DataError> {
    let class_dirs = entries(dir, true)?;
    if class_dirs.len() < 2 {
        return Err(err(
            dir,
            format!(
                "holds {} class folder{}: put each class's pictures in a sub-folder named for \
                 it (DIR/cat/1.png, DIR/dog/2.jpg, ...); a classifier needs two or more",
                class_dirs.len(),
                if class_dirs.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = 0;
    let mut classes = Vec::new();
    for (c, d) in class_dirs.iter().enumerate() {
        let all = entries(d, false)?;
        let pics: Vec<PathBuf> = all.iter().filter(|p| is_image(p)).cloned().collect();
        skipped += all.len() - pics.len();
        if pics.is_empty() {
            return Err(err(
                d,
                "holds no PNG or JPEG picture: every class folder needs at least one",
            ));
        }
        labels.extend(std::iter::repeat_n(c as u32, pics.len()));
        files.extend(pics);
        classes.push(
            d.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        );
    }
    if let Some(ch) = opts.channels {
        if ch != 1 && ch != 3 {
            return Err(err(
                dir,
                format!("{ch} channels: pictures are read as 1 (grey) or 3 (RGB)"),
            ));
        }
    }
    // The size and channels come from the options, else from the pictures.
    let channels = match opts.channels {
        Some(c) => c,
        None => {
            let mut all_grey = true;
            for f in &files {
                if !probe_grey(f)? {
                    all_grey = false;
                    break;
                }
            }
            if all_grey {
                1
            } else {
                3
            }
        }
    };
    let first = decode_image(&files[0], channels, opts.size)?;
    let size = opts.size.unwrap_or(first.size);
    let per = first.values.len();
    let mut values = vec![0f32; files.len() * per];
    // Decoding is most of the time: the files are split over the machine's cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    let chunk = files.len().div_ceil(threads);
    let (all, first_file) = (&files, &files[0]);
    let results: Vec<Result<(), DataError>> = std::thread::scope(|s| {
        let handles: Vec<_> = values
            .chunks_mut(chunk * per)
            .zip(all.chunks(chunk))
            .map(|(out, names)| {
                s.spawn(move || {
                    for (o, f) in out.chunks_mut(per).zip(names) {
                        let Decoded {
                            values: v,
                            size: own,
                        } = decode_image(f, channels, opts.size)?;
                        if opts.size.is_none() && own != size {
                            return Err(err(
                                f,
                                format!(
                                    "is {}x{} pixels but {} is {}x{}: give one size to resize \
                                     every picture to",
                                    own.1,
                                    own.0,
                                    first_file.display(),
                                    size.1,
                                    size.0
                                ),
                            ));
                        }
                        o.copy_from_slice(&v);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(err(dir, "a decoding thread failed")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    let shape = [channels, size.0 as usize, size.1 as usize];
    let n = classes.len();
    Ok(ImageFolder {
        data: Dataset::from_vecs(&shape, values, labels, n)?,
        classes,
        files,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, w: u32, h: u32, rgb: bool, f: impl Fn(u32, u32) -> [u8; 3]) {
        if rgb {
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)))
                .save(path)
                .unwrap();
        } else {
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)[0]]))
                .save(path)
                .unwrap();
        }
    }

    #[test]
    fn a_header_larger_than_its_file_can_hold_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.png");
        // A flat 3000 x 3000 picture compresses about as well as deflate can: still read.
        save(&p, 3000, 3000, false, |_, _| [0; 3]);
        assert_eq!(
            decode_image(&p, 1, Some((2, 2))).unwrap().size,
            (3000, 3000)
        );
        // The same file saying it is 60000 x 60000 (3.6 G pixels): refused by its size.
        let mut png = std::fs::read(&p).unwrap();
        png[16..24].copy_from_slice(&[0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60]);
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        std::fs::write(&p, &png).unwrap();
        let e = decode_image(&p, 1, None).unwrap_err().to_string();
        assert!(
            e.contains("says it is 60000 x 60000 pixels but holds only"),
            "{e}"
        );
    }

    #[test]
    fn classes_are_sorted_folders_and_every_pixel_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for (class, k) in [("zebra", 0u32), ("ant", 1)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..3u32 {
                let p = dir.path().join(class).join(format!("{i}.png"));
                save(&p, 3, 2, false, |x, y| {
                    [(k * 100 + i * 10 + y * 3 + x) as u8; 3]
                });
            }
        }
        std::fs::write(dir.path().join("ant/notes.txt"), "not a picture").unwrap();
        let f = read_image_folder(dir.path(), &ImageOptions::default()).unwrap();
        assert_eq!(f.classes, ["ant", "zebra"]);
        assert_eq!(
            (f.data.len(), f.data.shape(), f.skipped),
            (6, &[1, 2, 3][..], 1)
        );
        assert_eq!(f.data.labels(), &[0, 0, 0, 1, 1, 1]);
        for e in 0..6 {
            let (k, i) = (if e < 3 { 1 } else { 0 }, e as u32 % 3);
            for y in 0..2u32 {
                for x in 0..3u32 {
                    let want = (k * 100 + i * 10 + y * 3 + x) as f32 / 255.0;
                    assert_eq!(f.data.example(e)[(y * 3 + x) as usize], want);
                }
            }
        }
    }

    #[test]
    fn rgb_is_channels_first_and_sizes_are_refused_or_resized() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["a", "b"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
        }
        save(&dir.path().join("a/1.png"), 2, 2, true, |x, y| {
            [10 + x as u8, 20 + y as u8, 30]
        });
        save(&dir.path().join("b/1.jpg"), 2, 2, true, |_, _| {
            [200, 100, 50]
        });
        let f = read_image_folder(dir.path(), &ImageOptions::default()).unwrap();
        assert_eq!(f.data.shape(), &[3, 2, 2]);
        let e = f.data.example(0);
        assert_eq!(
            &e[..4],
            &[10.0 / 255.0, 11.0 / 255.0, 10.0 / 255.0, 11.0 / 255.0]
        );
        assert_eq!(
            &e[4..8],
            &[20.0 / 255.0, 20.0 / 255.0, 21.0 / 255.0, 21.0 / 255.0]
        );
        assert_eq!(e[8], 30.0 / 255.0);
        // JPEG is lossy: near, not equal.
        assert!((f.data.example(1)[0] - 200.0 / 255.0).abs() < 0.05);
        save(&dir.path().join("b/2.png"), 4, 3, true, |_, _| [0, 0, 0]);
        let e = read_image_folder(dir.path(), &ImageOptions::default()).unwrap_err();
        assert!(e.to_string().contains("2.png: is 4x3 pixels but"), "{e}");
        let opts = ImageOptions {
            size: Some((5, 5)),
            channels: Some(1),
        };
        let f = read_image_folder(dir.path(), &opts).unwrap();
        assert_eq!((f.data.shape(), f.data.len()), (&[1, 5, 5][..], 3));
    }

    #[test]
    fn bad_folders_and_pictures_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("only")).unwrap();
        save(&dir.path().join("only/1.png"), 2, 2, false, |_, _| [0; 3]);
        let e = read_image_folder(dir.path(), &ImageOptions::default()).unwrap_err();
        assert!(e.to_string().contains("holds 1 class folder"), "{e}");
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let e = read_image_folder(dir.path(), &ImageOptions::default()).unwrap_err();
        assert!(e.to_string().contains("empty: holds no PNG or JPEG"), "{e}");
        std::fs::write(
            dir.path().join("empty/bad.png"),
            b"\x89PNG\r\n\x1a\ncorrupt",
        )
        .unwrap();
        let e = read_image_folder(dir.path(), &ImageOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("bad.png: is not a readable PNG or JPEG"),
            "{e}"
        );
    }
}
