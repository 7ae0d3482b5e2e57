//! `descent data show SOURCE`: what a source holds (counts per class, shapes, value ranges,
//! a table's columns) and, for pictures, a grid of samples per class as a PNG.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use descent_data::Dataset;

use super::{DataMeta, DataSource, LoadOptions, SourceArgs};

/// `descent data show`'s arguments.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The source, as --data names it (mnist, fashion-mnist, idx:DIR, csv:FILE, ...).
    pub source: String,
    /// Where to write the grid of sample pictures (image sources).
    #[arg(long, value_name = "FILE", default_value = "samples.png")]
    pub out: PathBuf,
    /// Sample pictures per class in the grid.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub samples: usize,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Never download: fail if the data is not on disk.
    #[arg(long)]
    pub no_fetch: bool,
    #[command(flatten)]
    pub source_args: SourceArgs,
}

/// Count, min, max, mean and std of a stream of values.
#[derive(Default)]
struct Stats {
    n: u64,
    min: f64,
    max: f64,
    sum: f64,
    sq: f64,
}

impl Stats {
    fn add(&mut self, v: f32) {
        let v = v as f64;
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        }
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.sq += v * v;
    }

    fn line(&self) -> String {
        let mean = self.sum / self.n.max(1) as f64;
        let var = (self.sq / self.n.max(1) as f64 - mean * mean).max(0.0);
        format!(
            "min {:.4} max {:.4} mean {:.4} std {:.4}",
            self.min,
            self.max,
            mean,
            var.sqrt()
        )
    }
}

/// The examples `idx` of `data` (any store), a batch at a time.
fn for_examples(data: &Dataset, mut each: impl FnMut(usize, &[f32])) {
    let f = data.features();
    let mut buf = vec![0.0; 256 * f];
    let order: Vec<u32> = (0..data.len() as u32).collect();
    for chunk in order.chunks(256) {
        data.fill_rows(chunk, &mut buf);
        for (k, &i) in chunk.iter().enumerate() {
            each(i as usize, &buf[k * f..(k + 1) * f]);
        }
    }
}

pub fn run(args: ShowArgs) -> Result<()> {
    let source = DataSource::parse(Some(&args.source))?;
    if let DataSource::Text(path) = &source {
        let corpus = super::read_text(path, descent_data::TokenKind::Chars)?;
        out!(
            "{}: {} tokens (characters), a vocabulary of {}",
            path.display(),
            corpus.ids.len(),
            corpus.vocab.len()
        );
        return Ok(());
    }
    let none = |_: usize| Ok(0);
    // A table's columns are shown as the file has them.
    let mut table = args.source_args.clone();
    if let DataSource::Csv(_) = source {
        table.normalize = "none".into();
    }
    let o = LoadOptions {
        data_dir: args.data_dir.as_deref(),
        no_fetch: args.no_fetch,
        quiet: false,
        val_count: &none,
        seed: 0,
        table: &table,
    };
    let data = super::load_train(&source, &o)?;
    let (train, test, meta) = (&data.train, &data.test, &data.meta);
    out!(
        "{}: {} training and {} test examples of shape {:?}{}",
        source.name(),
        train.len(),
        test.len(),
        train.shape(),
        match train.is_regression() {
            true => format!(", {} target values each", train.outputs()),
            false => format!(", {} classes", train.classes()),
        }
    );
    let mut all = Stats::default();
    let mut per_feature: Vec<Stats> = (0..train.features().min(64))
        .map(|_| Stats::default())
        .collect();
    for_examples(train, |_, x| {
        for (j, &v) in x.iter().enumerate() {
            all.add(v);
            if let Some(s) = per_feature.get_mut(j) {
                s.add(v);
            }
        }
    });
    if let Some(schema) = &meta.table {
        out!("training inputs: {}", all.line());
        out!("columns of the training rows (standardized for training unless --normalize none):");
        for (name, s) in schema.features.iter().zip(&per_feature) {
            out!("  {name:<20} {}", s.line());
        }
    } else {
        out!("training inputs, as the model sees them: {}", all.line());
        out!("  {}", normalization(meta));
    }
    if train.is_regression() {
        let mut t = Stats::default();
        train.values().iter().for_each(|&v| t.add(v));
        out!("targets: {}", t.line());
        return Ok(());
    }
    let count = |d: &Dataset| {
        let mut c = vec![0usize; d.classes().max(train.classes())];
        d.labels().iter().for_each(|&l| c[l as usize] += 1);
        c
    };
    let (ct, cs) = (count(train), count(test));
    out!("{:<28} {:>9} {:>9}", "class", "train", "test");
    for (c, (a, b)) in ct.iter().zip(&cs).enumerate() {
        let name = format!("{c} {}", meta.class_name(c));
        let name = if meta.class_name(c) == c.to_string() {
            c.to_string()
        } else {
            name
        };
        out!("{name:<28} {a:>9} {b:>9}");
    }
    if train.shape().len() == 3 {
        grid(train, args.samples, &args.out)
            .with_context(|| format!("writing {}", args.out.display()))?;
        out!(
            "wrote {} ({} samples of each class, a row per class)",
            args.out.display(),
            args.samples
        );
    }
    Ok(())
}

/// How the inputs were normalized, in words.
fn normalization(meta: &DataMeta) -> String {
    match (&meta.pixels, &meta.standardize) {
        (Some(p), _) => format!(
            "pixels became (x / 255 - {:.4}) / {:.4} (--normalize)",
            p.mean, p.std
        ),
        (None, Some(s)) => format!(
            "standardized per {} with the training set's means and stds ({} of them)",
            match s.per {
                descent_data::Per::Feature => "feature",
                descent_data::Per::Channel => "channel",
            },
            s.mean.len()
        ),
        (None, None) => "not normalized (--normalize none)".into(),
    }
}

/// A PNG of `samples` pictures of each class, a row per class, each picture scaled to its
/// own range of values, with a 1-pixel gap.
fn grid(data: &Dataset, samples: usize, out: &Path) -> Result<()> {
    if samples == 0 {
        bail!("invalid --samples 0: show 1 or more pictures per class");
    }
    let s = data.shape();
    let (ch, h, w) = (s[0], s[1], s[2]);
    if ch != 1 && ch != 3 {
        bail!("pictures of {ch} channels cannot be drawn (1 or 3)");
    }
    let classes = data.classes();
    let mut picked: Vec<Vec<u32>> = vec![Vec::new(); classes];
    for (i, &l) in data.labels().iter().enumerate() {
        if picked[l as usize].len() < samples {
            picked[l as usize].push(i as u32);
        }
    }
    let (gw, gh) = (samples * (w + 1) + 1, classes * (h + 1) + 1);
    let mut img = vec![64u8; gw * gh * 3];
    let mut x = vec![0.0; ch * h * w];
    for (c, idx) in picked.iter().enumerate() {
        for (k, &i) in idx.iter().enumerate() {
            data.fill_rows(&[i], &mut x);
            let (lo, hi) = x
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            for y in 0..h {
                for xx in 0..w {
                    let (gx, gy) = (1 + k * (w + 1) + xx, 1 + c * (h + 1) + y);
                    for p in 0..3 {
                        let v = x[(if ch == 3 { p } else { 0 }) * h * w + y * w + xx];
                        img[(gy * gw + gx) * 3 + p] = ((v - lo) * scale).round() as u8;
                    }
                }
            }
        }
    }
    let file = std::fs::File::create(out)?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), gw as u32, gh as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header()?.write_image_data(&img)?;
    Ok(())
}
