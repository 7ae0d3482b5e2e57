//! `descent predict WEIGHTS INPUT`: the most likely classes of one image (PNG) or of the images
//! of an IDX file, with their probabilities and the class names the weights record; for a
//! model trained on a table, the prediction for each row of a CSV file (a class name, or the
//! target's value).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use descent_data::{read_idx, Task};
use descent_nn::Workspace;
use descent_tensor::Pool;
use descent_train::checkpoint::{load_weights, read_metadata};

use crate::cli::PredictArgs;
use crate::data::DataMeta;

/// A PNG as 8-bit grey values, row-major, with its width and height.
fn read_png(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let file = std::fs::File::open(path).map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| anyhow!("{} is not a readable PNG image: {e}", path.display()))?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| anyhow!("{}: image too large", path.display()))?
    ];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| anyhow!("{} is not a readable PNG image: {e}", path.display()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let grey = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|px| match channels {
            1 | 2 => px[0],
            // Luma from RGB (ITU-R 601), ignoring alpha.
            _ => (0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32).round() as u8,
        })
        .collect();
    Ok((grey, w, h))
}

/// The images in `input` (a PNG or an IDX file of `N x 28 x 28` bytes), each `features` bytes.
fn images(input: &Path, features: usize, invert: bool) -> Result<Vec<Vec<u8>>> {
    let head = std::fs::read(input).map_err(|e| anyhow!("reading {}: {e}", input.display()))?;
    let is_png = head.starts_with(b"\x89PNG");
    // An IDX file of bytes starts 00 00 08 N (N dimensions), raw or gzip-compressed.
    let is_idx = head.starts_with(&[0, 0, 8]) || head.starts_with(&[0x1f, 0x8b]);
    if !is_png && !is_idx {
        let kind = match head.as_slice() {
            [0xff, 0xd8, ..] => "a JPEG picture",
            [b'G', b'I', b'F', ..] => "a GIF picture",
            [b'B', b'M', ..] => "a BMP picture",
            [] => "empty",
            _ => "neither a PNG picture nor an IDX file",
        };
        bail!(
            "{} is {kind}: predict reads a PNG picture ({features} pixels, 28x28 for MNIST) or \
             an IDX file of such images; convert it to PNG first",
            input.display()
        );
    }
    let mut out: Vec<Vec<u8>> = if is_png {
        let (grey, w, h) = read_png(input)?;
        if w * h != features {
            bail!(
                "{} is {w}x{h} pixels; the model takes {features} values (28x28 for MNIST): resize it first",
                input.display()
            );
        }
        let mean = grey.iter().map(|&p| p as f64).sum::<f64>() / grey.len().max(1) as f64;
        if mean > 127.0 && !invert {
            eprintln!(
                "note: {} is mostly light (mean pixel {mean:.0} of 255), while MNIST's digits are \
                 light on a dark ground: for a dark digit on white paper, add --invert",
                input.display()
            );
        }
        vec![grey]
    } else {
        let idx = read_idx(input)?;
        let per: usize = idx.dims[1..].iter().product();
        if idx.dims.len() < 2 || per != features {
            bail!(
                "{} holds arrays of shape {:?}; the model takes {features} values per image",
                input.display(),
                idx.dims
            );
        }
        idx.data.chunks(per).map(|c| c.to_vec()).collect()
    };
    if invert {
        out.iter_mut()
            .for_each(|img| img.iter_mut().for_each(|p| *p = 255 - *p));
    }
    Ok(out)
}

/// The classes of `logits` ranked, the top `top` as `name (p%)`.
fn ranked(logits: &[f32], top: usize, meta: &DataMeta) -> String {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut ranked: Vec<(usize, f64)> = exp.iter().map(|e| e / sum).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = ranked
        .iter()
        .take(top)
        .map(|&(c, p)| format!("{} ({:.1}%)", meta.class_name(c), 100.0 * p))
        .collect();
    top.join(", ")
}

/// Predictions for the rows of a CSV file, for a model trained on a table.
fn run_table(args: &PredictArgs, meta: &DataMeta) -> Result<()> {
    let schema = meta.table.as_ref().expect("a table");
    let spec = crate::eval::architecture(&args.weights, args.model.as_deref(), None, None)?;
    let features = schema.features.len();
    let outputs = schema.labels.len().max(1);
    crate::models::fits(&spec, &[features], outputs)
        .with_context(|| format!("{}", args.weights.display()))?;
    let net = crate::models::build(&spec)?;
    let (params, _) = load_weights(&args.weights, net.layout())?;
    if schema.task == Task::Classify && (args.top == 0 || args.top > outputs) {
        bail!(
            "invalid --top {}: show between 1 and {outputs} classes",
            args.top
        );
    }
    let rows = crate::data::table_rows(meta, &args.input)?;
    let pool = Pool::new(1)?;
    let mut ws = Workspace::new(&net, 1, 1);
    for (x, line) in rows.x.chunks(features).zip(&rows.lines).take(args.limit) {
        let out = net.forward(&params, x, &mut ws, &pool)?;
        match schema.task {
            Task::Classify => out!("line {line}: {}", ranked(out, args.top, meta)),
            Task::Regress => out!("line {line}: {} {}", schema.target, out[0]),
        }
    }
    if rows.lines.len() > args.limit {
        out!("... {} more (--limit)", rows.lines.len() - args.limit);
    }
    Ok(())
}

pub fn run(args: PredictArgs) -> Result<()> {
    let meta = DataMeta::of(&args.weights, &read_metadata(&args.weights)?)?.unwrap_or_default();
    if meta.table.is_some() {
        return run_table(&args, &meta);
    }
    let spec = crate::eval::architecture(&args.weights, args.model.as_deref(), None, None)?;
    let net = crate::models::build(&spec)?;
    let (features, classes) = (net.input_features(), net.output_features());
    let (params, _) = load_weights(&args.weights, net.layout())?;
    if args.top == 0 || args.top > classes {
        bail!(
            "invalid --top {}: show between 1 and {classes} classes",
            args.top
        );
    }
    let pool = Pool::new(1)?;
    let mut ws = Workspace::new(&net, 1, 1);
    if let Some(im) = meta.image {
        // A model of a folder of pictures: the input is decoded, sized and normalized as its
        // training pictures were.
        let mut x =
            descent_data::decode_image(&args.input, im.channels, Some((im.height, im.width)))?
                .values;
        if args.invert {
            x.iter_mut().for_each(|v| *v = 1.0 - *v);
        }
        if let Some(s) = &meta.standardize {
            s.apply_row(&mut x)?;
        }
        let logits = net.forward(&params, &x, &mut ws, &pool)?;
        out!(
            "{}: {}",
            args.input.display(),
            ranked(logits, args.top, &meta)
        );
        return Ok(());
    }
    let imgs = images(&args.input, features, args.invert)?;
    // Pixels as training saw them: a set's (or the seed's) mean and std, or the standardization
    // fitted on arrays of bytes.
    let norm = match (&meta.pixels, &meta.standardize) {
        (Some(p), _) => *p,
        (None, Some(_)) => descent_data::Normalize {
            mean: 0.0,
            std: 1.0,
        },
        (None, None) => descent_data::Normalize::default(),
    };
    for (i, img) in imgs.iter().take(args.limit).enumerate() {
        let mut x: Vec<f32> = img
            .iter()
            .map(|&b| (b as f32 / 255.0 - norm.mean) / norm.std)
            .collect();
        if let Some(s) = &meta.standardize {
            s.apply_row(&mut x)?;
        }
        let logits = net.forward(&params, &x, &mut ws, &pool)?;
        out!("image {i}: {}", ranked(logits, args.top, &meta));
    }
    if imgs.len() > args.limit {
        out!("... {} more (--limit)", imgs.len() - args.limit);
    }
    Ok(())
}
