//! The data sources beyond MNIST through the real binary: tables (classification with label
//! names, regression), NumPy arrays, directories of IDX files; eval and predict read inputs as
//! training did; bad files are refused with the file, line or entry.

use std::io::Write;
use std::path::Path;

mod common;
use common::*;

#[test]
fn a_classification_table_trains_evaluates_and_predicts_label_names() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "t.csv", &classes_table(400, 1));
    let w = dir.path().join("w.safetensors");
    let data = format!("csv:{}", csv.display());
    let train = ok(&[
        "train",
        "--data",
        &data,
        "--hidden",
        "16",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "15",
        "--save",
        w.to_str().unwrap(),
    ]);
    assert!(
        train.contains("classify `size` into 2 classes") && train.contains("80 of them held out"),
        "{train}"
    );
    let acc = value_after(&train, "test_acc");
    assert!(acc > 90.0, "{train}");
    let show = ok(&["data", "show", &data]);
    assert!(
        show.contains("320 training and 80 test examples of shape [3], 2 classes")
            && show.contains("f0 ")
            && show.contains("0 big"),
        "{show}"
    );
    // eval reads the same held-out rows and standardizes them with the recorded statistics.
    let eval = ok(&["eval", w.to_str().unwrap()]);
    assert_eq!(value_after(&eval, "test_acc"), acc, "{eval}");
    assert!(eval.contains("big") && eval.contains("small"), "{eval}");
    // Optimizers race on the table too; a regression has no accuracy to rank by.
    let out = dir.path().join("race");
    let race = ok(&[
        "compare",
        "--data",
        &data,
        "--optimizers",
        "sgd,adam",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        race.contains("adam") && out.join("compare.csv").exists(),
        "{race}"
    );
    // New rows, columns in another order, no target: predictions by name.
    let new = write(
        dir.path(),
        "new.csv",
        "noise,f1,f0\n0,1.5,1.5\n0,-1.5,-1.8\n",
    );
    let pred = ok(&[
        "predict",
        w.to_str().unwrap(),
        new.to_str().unwrap(),
        "--top",
        "1",
    ]);
    assert!(
        pred.contains("line 2: big") && pred.contains("line 3: small"),
        "{pred}"
    );
    // With the target column, eval scores all of that file's rows.
    let other = write(dir.path(), "other.csv", &classes_table(100, 2));
    let eval = ok(&[
        "eval",
        w.to_str().unwrap(),
        "--data",
        &format!("csv:{}", other.display()),
    ]);
    assert!(eval.contains("of 100)"), "{eval}");
    let unknown = write(dir.path(), "u.csv", "f0,f1,noise,size\n1,1,0,huge\n");
    fails(
        &[
            "eval",
            w.to_str().unwrap(),
            "--data",
            &format!("csv:{}", unknown.display()),
        ],
        &[
            "u.csv",
            "line 2",
            "`huge` is not one of the model's classes (big, small)",
        ],
    );
}

#[test]
fn a_regression_table_trains_on_mse_and_predicts_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = String::from("a,b,y\n");
    for i in 0..300 {
        let (a, b) = ((i % 17) as f64 / 8.0 - 1.0, (i % 11) as f64 / 5.0 - 1.0);
        s += &format!("{a},{b},{}\n", 3.0 * a - 2.0 * b + 0.5);
    }
    let csv = write(dir.path(), "r.csv", &s);
    let w = dir.path().join("r.safetensors");
    let train = ok(&[
        "train",
        "--data",
        &format!("csv:{}", csv.display()),
        "--hidden",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "40",
        "--save",
        w.to_str().unwrap(),
    ]);
    assert!(
        train.contains("regress `y`") && train.contains("the loss is mse"),
        "{train}"
    );
    let mse = value_after(&train, "test_loss");
    assert!(mse < 0.05, "{train}");
    let eval = ok(&["eval", w.to_str().unwrap()]);
    assert!(
        (value_after(&eval, "test_loss") - mse).abs() < 1e-6,
        "{eval}"
    );
    assert!(eval.contains("rmse") && eval.contains("mae"), "{eval}");
    let new = write(dir.path(), "n.csv", "a,b\n0.5,0.5\n");
    let pred = ok(&["predict", w.to_str().unwrap(), new.to_str().unwrap()]);
    let v = value_after(&pred, "line 2: y");
    assert!((v - 1.0).abs() < 0.3, "{pred}");
}

#[test]
fn a_schedule_spans_the_run_when_validation_rows_are_held_out() {
    // 400 rows: 80 test, then half of the 320 held out for validation: 160 training rows,
    // 3 batches of 64 an epoch. A cosine schedule spans the 6 steps: the last one runs at
    // lr(5) = 0.01 (1 + cos(5 pi / 6)) / 2 (a schedule sized for fewer steps would have
    // turned back up by then).
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "t.csv", &classes_table(400, 4));
    let run = dir.path().join("run");
    ok(&[
        "train",
        "--data",
        &format!("csv:{}", csv.display()),
        "--val-split",
        "0.5",
        "--schedule",
        "cosine",
        "--epochs",
        "2",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last = metrics
        .lines()
        .rfind(|l| l.contains("\"epoch\":2") && l.contains("\"lr\""))
        .unwrap();
    let lr = value_after(last, "\"lr\":");
    let want = 0.01 * (1.0 + (5.0 * std::f64::consts::PI / 6.0).cos()) / 2.0;
    assert!(
        (lr - want).abs() < 1e-7,
        "the schedule does not span the run: {last}"
    );
    assert!(last.contains("\"steps\":6"), "{last}");
}

#[test]
fn missing_cells_are_refused_dropped_or_filled_from_the_training_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = classes_table(200, 3);
    body += ",1.0,0.5,big\n2.0,NA,0.1,big\n";
    let csv = write(dir.path(), "m.csv", &body);
    let data = format!("csv:{}", csv.display());
    fails(
        &["train", "--data", &data, "--epochs", "1"],
        &["m.csv", "line 202, column `f0`: the value is missing"],
    );
    let drop = ok(&["train", "--data", &data, "--epochs", "1", "--na", "drop"]);
    assert!(
        drop.contains("2 rows with missing cells left out"),
        "{drop}"
    );
    let mean = ok(&["train", "--data", &data, "--epochs", "1", "--na", "mean"]);
    assert!(mean.contains("filled with training means"), "{mean}");
}

#[test]
fn bad_tables_and_arrays_are_refused_with_the_file_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = |name: &str, body: &str| format!("csv:{}", write(d, name, body).display());
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            csv("ragged.csv", "a,b,c\n1,2,x\n1,2\n"),
            vec![],
            vec!["ragged.csv", "line 3 has 2 fields, the header has 3"],
        ),
        (
            csv("t.csv", "a,b\n1,x\n2,y\n"),
            vec!["--target", "price"],
            vec!["no target column `price` (its columns: a, b)"],
        ),
        (
            csv("mixed.csv", "a,b\n1,x\nhello,y\n"),
            vec![],
            vec!["mixed.csv", "line 3, column `a`: `hello` is not a number"],
        ),
        (
            csv("nan.csv", "a,b\n1,x\nnan,y\n"),
            vec![],
            vec!["line 3, column `a`: the value is missing"],
        ),
        (
            csv("inf.csv", "a,b\n1,x\ninf,y\n"),
            vec![],
            vec!["line 3, column `a`: `inf` is inf"],
        ),
        (
            csv("empty.csv", ""),
            vec![],
            vec!["empty.csv", "the file is empty"],
        ),
        (
            csv("one.csv", "a,b\n1,x\n2,x\n"),
            vec![],
            vec!["a single class (`x`)"],
        ),
        (
            csv("float.csv", "a,b\n1,x\n2,y\n"),
            vec!["--target", "a", "--task", "regress", "--features", "b"],
            vec!["`b`", "`x` is not a number"],
        ),
    ];
    for (data, extra, needles) in &cases {
        let mut args = vec!["train", "--data", data.as_str(), "--epochs", "1"];
        args.extend(extra);
        fails(&args, needles);
    }
    // NumPy: mismatched lengths, a file that is not NumPy, a missing array in an archive.
    let npy = |name: &str, descr: &str, shape: &str, data: &[u8]| {
        let out = npy_bytes(descr, shape, data);
        let p = d.join(name);
        std::fs::write(&p, out).unwrap();
        p.display().to_string()
    };
    let x = npy("x.npy", "<f4", "(3, 2)", &[0u8; 24]);
    let y2 = npy("y2.npy", "<i8", "(2,)", &[0u8; 16]);
    fails(
        &["train", "--data", &format!("npy:{x},{y2}"), "--epochs", "1"],
        &[
            "x.npy and",
            "the inputs hold 3 examples (shape [3, 2]) but the targets 2",
        ],
    );
    let junk = write(d, "junk.npy", "not numpy at all")
        .display()
        .to_string();
    fails(
        &[
            "train",
            "--data",
            &format!("npy:{x},{junk}"),
            "--epochs",
            "1",
        ],
        &["junk.npy", "not a NumPy .npy array"],
    );
    let zip = d.join("a.npz");
    {
        let f = std::fs::File::create(&zip).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file("inputs.npy", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(&std::fs::read(&x).unwrap()).unwrap();
        z.finish().unwrap();
    }
    fails(
        &[
            "train",
            "--data",
            &format!("npz:{}", zip.display()),
            "--epochs",
            "1",
        ],
        &["name its arrays x and y", "it holds inputs"],
    );
    fails(
        &["train", "--data", "npy:only-one.npy", "--epochs", "1"],
        &["npy:X.npy,Y.npy"],
    );
}

/// A NumPy .npy file (version 1, C order) of `descr` and `shape` (`(3, 2)`) holding `data`.
fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (11 + header.len()) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// An IDX file of unsigned bytes.
fn idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn arrays_and_idx_directories_train_and_evaluate_the_same_test_examples() {
    let dir = tempfile::tempdir().unwrap();
    // 300 4x4 "images": class 1 is bright on the left half, class 0 on the right.
    let n = 300;
    let (mut px, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = (i % 2) as u8;
        for r in 0..4 {
            for col in 0..4 {
                let bright = (col < 2) == (c == 1);
                px.push(if bright {
                    200 + (i * 7 + r) as u8 % 50
                } else {
                    (i * 3 + col) as u8 % 40
                });
            }
        }
        labels.push(c);
    }
    let idx_dir = dir.path().join("idx");
    std::fs::create_dir(&idx_dir).unwrap();
    idx(
        &idx_dir.join("train-images-idx3-ubyte"),
        &[n as u32, 4, 4],
        &px,
    );
    idx(
        &idx_dir.join("train-labels-idx1-ubyte"),
        &[n as u32],
        &labels,
    );
    let w = dir.path().join("i.safetensors");
    let data = format!("idx:{}", idx_dir.display());
    let train = ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "5",
        "--hidden",
        "8",
        "--save",
        w.to_str().unwrap(),
    ]);
    assert!(
        train.contains("240 training and 60 test examples of [1, 4, 4], 2 classes"),
        "{train}"
    );
    let acc = value_after(&train, "test_acc");
    assert_eq!(
        value_after(&ok(&["eval", w.to_str().unwrap()]), "test_acc"),
        acc
    );
    fails(
        &[
            "train",
            "--data",
            &format!("idx:{}", dir.path().join("nowhere").display()),
            "--epochs",
            "1",
        ],
        &["invalid --data idx:"],
    );
    // The same pixels as NumPy arrays: bytes are pixels, labels int64.
    let x = npy_bytes("|u1", &format!("({n}, 4, 4)"), &px);
    let ys: Vec<u8> = labels
        .iter()
        .flat_map(|&l| (l as i64).to_le_bytes())
        .collect();
    let y = npy_bytes("<i8", &format!("({n},)"), &ys);
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    std::fs::write(&xp, x).unwrap();
    std::fs::write(&yp, y).unwrap();
    let w2 = dir.path().join("n.safetensors");
    let data = format!("npy:{},{}", xp.display(), yp.display());
    let train = ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "5",
        "--hidden",
        "8",
        "--save",
        w2.to_str().unwrap(),
    ]);
    assert!(
        train.contains("240 training and 60 test examples of [1, 4, 4] (bytes as pixels"),
        "{train}"
    );
    let acc = value_after(&train, "test_acc");
    assert!(acc > 90.0, "{train}");
    assert_eq!(
        value_after(&ok(&["eval", w2.to_str().unwrap()]), "test_acc"),
        acc
    );
}

#[test]
fn fashion_mnist_without_a_source_says_what_it_tried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    fails(
        &["data", "fetch", "fashion-mnist", "--data-dir", root],
        &["could not fetch", "127.0.0.1:9", "DESCENT_APT=none"],
    );
    fails(
        &[
            "train",
            "--data",
            "fashion-mnist",
            "--data-dir",
            root,
            "--no-fetch",
        ],
        &[
            "Fashion-MNIST is not in",
            "descent data fetch fashion-mnist",
        ],
    );
}

/// A grey PNG of `w x h` pixels.
fn png(path: &Path, w: u32, h: u32, px: impl Fn(u32, u32) -> u8) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    e.set_color(png::ColorType::Grayscale);
    let data: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| px(x, y))
        .collect();
    e.write_header().unwrap().write_image_data(&data).unwrap();
}

#[test]
fn a_folder_of_pictures_trains_evaluates_and_predicts_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    // "stripes" are bright in even columns, "bars" in even rows; 40 pictures each.
    for (class, vertical) in [("stripes", true), ("bars", false)] {
        std::fs::create_dir_all(pics.join(class)).unwrap();
        for i in 0..40u32 {
            png(&pics.join(class).join(format!("{i}.png")), 6, 6, |x, y| {
                let on = if vertical { x % 2 == 0 } else { y % 2 == 0 };
                if on {
                    180 + (i % 60) as u8
                } else {
                    (i % 30) as u8
                }
            });
        }
    }
    std::fs::write(pics.join("stripes/README.txt"), "not a picture").unwrap();
    let w = dir.path().join("p.safetensors");
    let data = format!("images:{}", pics.display());
    let train = ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "10",
        "--hidden",
        "8",
        "--save",
        w.to_str().unwrap(),
    ]);
    assert!(
        train.contains("64 training and 16 test examples of 6x6 grey, 2 classes (bars, stripes)")
            && train.contains("1 files that are not PNG or JPEG left out"),
        "{train}"
    );
    let acc = value_after(&train, "test_acc");
    assert!(acc > 90.0, "{train}");
    assert_eq!(
        value_after(&ok(&["eval", w.to_str().unwrap()]), "test_acc"),
        acc
    );
    // A new picture, given as an RGB-less grey PNG, as training read them.
    let big = dir.path().join("new.png");
    png(&big, 6, 6, |x, _| if x % 2 == 0 { 210 } else { 5 });
    let pred = ok(&[
        "predict",
        w.to_str().unwrap(),
        big.to_str().unwrap(),
        "--top",
        "1",
    ]);
    assert!(pred.contains(": stripes ("), "{pred}");
    // Sizes that differ are refused unless resized; one class and corrupt files are refused.
    png(&pics.join("bars/odd.png"), 5, 6, |_, _| 0);
    fails(
        &["train", "--data", &data, "--epochs", "1"],
        &["odd.png: is 5x6 pixels but", "6x6"],
    );
    let resized = ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "1",
        "--image-size",
        "8x8",
    ]);
    assert!(resized.contains("of 8x8 grey"), "{resized}");
    std::fs::write(pics.join("bars/odd.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    fails(
        &["train", "--data", &data, "--epochs", "1"],
        &["odd.png: is not a readable PNG or JPEG"],
    );
    std::fs::remove_dir_all(pics.join("bars")).unwrap();
    fails(
        &["train", "--data", &data, "--epochs", "1"],
        &["holds 1 class folder"],
    );
    fails(
        &["train", "--data", &data, "--image-size", "0x3"],
        &["invalid --image-size 0x3"],
    );
}
