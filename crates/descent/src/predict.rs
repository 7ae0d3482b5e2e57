//! `descent predict WEIGHTS INPUT`: the most likely classes of one image (PNG) or of the images
//! of an IDX file, with their probabilities.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use descent_data::{read_idx, Normalize};
use descent_nn::Workspace;
use descent_tensor::Pool;
use descent_train::checkpoint::load_weights;

use crate::cli::PredictArgs;

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
    let is_png = std::fs::read(input)
        .map_err(|e| anyhow!("reading {}: {e}", input.display()))?
        .starts_with(b"\x89PNG");
    let mut out: Vec<Vec<u8>> = if is_png {
        let (grey, w, h) = read_png(input)?;
        if w * h != features {
            bail!(
                "{} is {w}x{h} pixels; the model takes {features} (28x28 for MNIST): resize it first",
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

pub fn run(args: PredictArgs) -> Result<()> {
    let spec = crate::eval::architecture(&args.weights, args.model.as_deref(), None, None)?;
    let (features, classes) = (784, 10);
    crate::models::fits(&spec, &crate::models::MNIST_SHAPE, classes)
        .with_context(|| format!("{}", args.weights.display()))?;
    let net = crate::models::build(&spec)?;
    let (params, _) = load_weights(&args.weights, net.layout())?;
    if args.top == 0 || args.top > classes {
        bail!(
            "invalid --top {}: show between 1 and {classes} classes",
            args.top
        );
    }
    let imgs = images(&args.input, features, args.invert)?;
    let norm = Normalize::default();
    let pool = Pool::new(1)?;
    let mut ws = Workspace::new(&net, 1, 1);
    for (i, img) in imgs.iter().take(args.limit).enumerate() {
        let x: Vec<f32> = img
            .iter()
            .map(|&b| (b as f32 / 255.0 - norm.mean) / norm.std)
            .collect();
        let logits = net.forward(&params, &x, &mut ws, &pool)?;
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let mut ranked: Vec<(usize, f64)> = exp.iter().map(|e| e / sum).enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = ranked
            .iter()
            .take(args.top)
            .map(|(c, p)| format!("{c} ({:.1}%)", 100.0 * p))
            .collect();
        out!("image {i}: {}", top.join(", "));
    }
    if imgs.len() > args.limit {
        out!("... {} more (--limit)", imgs.len() - args.limit);
    }
    Ok(())
}
