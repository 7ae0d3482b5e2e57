//! Event files read back: every scalar at its step, histograms that count what was sent,
//! HParams sessions, and damage reported. (TensorBoard's own reader reads the same files in
//! `tools/tensorboard_check.py`.)

use std::collections::BTreeMap;

use descent_board::proto::{event::What, hparams_plugin_data::Data, value::Kind};
use descent_board::{
    histogram, read_events, write_experiment, Domain, ExperimentInfo, HParam, Status, SummaryWriter,
};
use prost::Message;

fn values(path: &std::path::Path) -> Vec<(i64, descent_board::proto::Value)> {
    let events = read_events(path).unwrap();
    assert!(matches!(&events[0].what, Some(What::FileVersion(v)) if v == "brain.Event:2"));
    events
        .into_iter()
        .skip(1)
        .flat_map(|e| match e.what {
            Some(What::Summary(s)) => s.value.into_iter().map(|v| (e.step, v)).collect::<Vec<_>>(),
            _ => panic!("only summaries follow the version"),
        })
        .collect::<Vec<_>>()
}

#[test]
fn scalars_and_histograms_come_back_at_their_steps() {
    let dir = tempfile::tempdir().unwrap();
    let tb = SummaryWriter::create(dir.path().join("run")).unwrap();
    for step in 1..=500u64 {
        tb.scalar("train/loss", step, 1.0 / step as f64);
        if step % 100 == 0 {
            tb.scalar("val/accuracy", step, step as f64 / 1000.0);
        }
    }
    let w: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 100.0).collect();
    tb.histogram("weights/fc.weight", 500, w.clone());
    let path = tb.path().to_path_buf();
    tb.flush().unwrap();
    tb.close().unwrap();

    let vals = values(&path);
    let loss: Vec<(i64, f32)> = vals
        .iter()
        .filter(|(_, v)| v.tag == "train/loss")
        .map(|(s, v)| match v.kind {
            Some(Kind::SimpleValue(x)) => (*s, x),
            _ => panic!("a scalar"),
        })
        .collect();
    assert_eq!(loss.len(), 500);
    for (i, (step, x)) in loss.iter().enumerate() {
        assert_eq!(*step, i as i64 + 1);
        assert_eq!(*x, (1.0 / (i + 1) as f64) as f32);
    }
    let acc: Vec<i64> = vals
        .iter()
        .filter(|(_, v)| v.tag == "val/accuracy")
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(acc, vec![100, 200, 300, 400, 500]);
    let (step, h) = vals
        .iter()
        .find_map(|(s, v)| match &v.kind {
            Some(Kind::Histo(h)) if v.tag == "weights/fc.weight" => Some((*s, h.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(step, 500);
    assert_eq!(h, histogram(&w, 30));
    assert_eq!(h.num, 1000.0);
    assert_eq!(h.bucket.iter().sum::<f64>(), 1000.0);
    assert_eq!((h.min, h.max), (-5.0, f64::from(4.99f32)));
}

#[test]
fn histogram_buckets_hold_what_their_limits_say() {
    // TensorFlow's rule: bucket i holds [limit[i-1], limit[i]); the last one holds the max.
    let values = [0.0f32, 0.05, 0.25, 0.95, 1.0, f32::NAN, f32::INFINITY];
    let h = histogram(&values, 10);
    assert_eq!(h.num, 5.0, "non-finite values are left out");
    assert_eq!(h.bucket_limit.len(), 10);
    assert_eq!(*h.bucket_limit.last().unwrap(), 1.0);
    assert!((h.bucket_limit[0] - 0.1).abs() < 1e-12);
    let mut want = vec![0.0; 10];
    (want[0], want[2], want[9]) = (2.0, 1.0, 2.0);
    assert_eq!(h.bucket, want);
    assert!((h.sum - 2.25).abs() < 1e-6 && (h.sum_squares - 1.9675).abs() < 1e-6);
    let same = histogram(&[3.0; 4], 30);
    assert_eq!((same.bucket_limit, same.bucket), (vec![3.0], vec![4.0]));
    assert_eq!(histogram(&[], 30).num, 0.0);
}

#[test]
fn hparams_sessions_and_experiment_decode_as_the_plugin_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(
        dir.path(),
        &ExperimentInfo {
            name: "mnist".into(),
            description: "lr and optimizer".into(),
            hparams: vec![
                ("lr".into(), Domain::Interval(1e-4, 0.3)),
                (
                    "optimizer".into(),
                    Domain::Choices(vec![
                        HParam::Text("sgd".into()),
                        HParam::Text("adam".into()),
                    ]),
                ),
            ],
            metrics: vec!["val/loss".into()],
        },
    )
    .unwrap();
    let tb = SummaryWriter::create(dir.path().join("trial-0")).unwrap();
    let hp = BTreeMap::from([
        ("lr".to_string(), HParam::Number(0.01)),
        ("optimizer".to_string(), HParam::Text("adam".into())),
    ]);
    tb.session_start(&hp, "trial-0");
    tb.scalar("val/loss", 3, 0.25);
    tb.session_end(Status::Success, 3);
    let path = tb.path().to_path_buf();
    tb.close().unwrap();

    let plugin = |v: &descent_board::proto::Value| {
        let pd = v.metadata.as_ref().unwrap().plugin_data.as_ref().unwrap();
        assert_eq!(pd.plugin_name, "hparams");
        let d = descent_board::proto::HParamsPluginData::decode(&pd.content[..]).unwrap();
        assert_eq!(d.version, 0);
        d.data.unwrap()
    };
    let root = descent_board::event_files(dir.path()).unwrap();
    assert_eq!(root.len(), 1);
    let exp = values(&root[0]);
    assert_eq!(exp[0].1.tag, "_hparams_/experiment");
    let Data::Experiment(e) = plugin(&exp[0].1) else {
        panic!("an experiment")
    };
    assert_eq!(e.name, "mnist");
    assert_eq!(e.hparam_infos.len(), 2);
    assert_eq!(
        e.hparam_infos[0]
            .domain_interval
            .as_ref()
            .unwrap()
            .max_value,
        0.3
    );
    assert_eq!(
        e.hparam_infos[1]
            .domain_discrete
            .as_ref()
            .unwrap()
            .values
            .len(),
        2
    );
    assert_eq!(e.metric_infos[0].name.as_ref().unwrap().tag, "val/loss");

    let run = values(&path);
    let tags: Vec<&str> = run.iter().map(|(_, v)| v.tag.as_str()).collect();
    assert_eq!(
        tags,
        [
            "_hparams_/session_start_info",
            "val/loss",
            "_hparams_/session_end_info"
        ]
    );
    let Data::SessionStartInfo(s) = plugin(&run[0].1) else {
        panic!("a session start")
    };
    assert_eq!(s.group_name, "trial-0");
    assert_eq!(s.hparams.len(), 2);
    let Data::SessionEndInfo(end) = plugin(&run[2].1) else {
        panic!("a session end")
    };
    assert_eq!(end.status, 1);
}

#[test]
fn a_damaged_file_is_named_with_where_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let tb = SummaryWriter::create(dir.path()).unwrap();
    tb.scalar("a", 1, 1.0);
    let path = tb.path().to_path_buf();
    tb.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = read_events(&path).unwrap_err().to_string();
    assert!(
        e.contains("damaged") && e.contains("checksum fails at byte"),
        "{e}"
    );
    std::fs::write(&path, &bytes[..n - 3]).unwrap();
    let e = read_events(&path).unwrap_err().to_string();
    assert!(e.contains("ends inside the record"), "{e}");
}

#[test]
fn an_unwritable_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = SummaryWriter::create(file.join("run"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("TensorBoard log") && e.contains("a-file"), "{e}");
}
