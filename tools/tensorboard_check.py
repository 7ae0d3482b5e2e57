#!/usr/bin/env python3
"""descent's TensorBoard logs, read by TensorBoard's own reader (EventAccumulator).

    pip install tensorboard optuna
    python tools/tensorboard_check.py target/release/descent WORKDIR [TRAIN FLAGS...]

Trains the seed's MLP for 2 epochs with Adam (so gradients are held) into WORKDIR/run with
--run-dir (the log goes to WORKDIR/run/tensorboard; TRAIN FLAGS such as --data-dir are passed
on) and checks: every
step's train/loss, train/lr, train/grad_norm and train/step_time at steps 1..N, the epoch
scalars at each epoch's last step matching metrics.jsonl, test/loss and test/acc, and a
weight and gradient histogram per tensor per epoch whose counts are the tensor's size (read
from the run's weights.safetensors).

Then runs a 3-trial `descent tune --tensorboard WORKDIR/tune` (1 epoch each, into the SQLite
study WORKDIR/study.db) and checks the HParams plugin's data as TensorBoard reads it: the
experiment in WORKDIR/tune names the searched flags and the metrics; each trial's run
trial-NNNN starts a session with exactly the parameters Optuna's load_study returns for that
trial, ends it successfully, and logs trial/objective equal to the trial's value and the
validation accuracy at its epoch. Exits non-zero on the first mismatch.
"""

import json
import os
import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def fail(msg):
    sys.exit(f"tensorboard_check: {msg}")


def tensor_sizes(path):
    """Element counts by tensor name, from a safetensors header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    sizes = {}
    for name, info in header.items():
        if name != "__metadata__":
            size = 1
            for d in info["shape"]:
                size *= d
            sizes[name] = size
    return sizes


def main():
    if len(sys.argv) < 3:
        fail("usage: tensorboard_check.py DESCENT WORKDIR [TRAIN FLAGS...]")
    descent, work, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    run = os.path.join(work, "run")
    subprocess.run(
        [descent, "train", "--epochs", "2", "--optimizer", "adam", "--lr", "0.001",
         "--run-dir", run, "--quiet", *extra],
        check=True,
    )
    ea = EventAccumulator(
        os.path.join(run, "tensorboard"),
        size_guidance={"scalars": 0, "histograms": 0, "tensors": 0},
    )
    ea.Reload()
    tags = ea.Tags()
    epochs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    epochs = [e for e in epochs if e.get("type") == "epoch"]
    if len(epochs) != 2:
        fail(f"metrics.jsonl has {len(epochs)} epochs, not 2")
    steps = epochs[-1]["steps"]
    for tag in ["train/loss", "train/lr", "train/grad_norm", "train/step_time"]:
        got = [s.step for s in ea.Scalars(tag)]
        if got != list(range(1, steps + 1)):
            fail(f"{tag}: steps {got[:3]}...{got[-3:]} ({len(got)}), not 1..{steps}")
    if any(abs(s.value - 0.001) > 1e-9 for s in ea.Scalars("train/lr")):
        fail("train/lr is not 0.001 throughout")
    if any(not s.value > 0 for s in ea.Scalars("train/grad_norm")):
        fail("a gradient norm is not positive")
    for key, tag in [("train_loss", "epoch/train_loss"), ("train_acc", "epoch/train_acc"),
                     ("test_loss", "test/loss"), ("test_acc", "test/acc")]:
        got = [(s.step, s.value) for s in ea.Scalars(tag)]
        want = [(e["steps"], e[key]) for e in epochs]
        if [g[0] for g in got] != [w[0] for w in want]:
            fail(f"{tag} at steps {[g[0] for g in got]}, not {[w[0] for w in want]}")
        for (_, g), (_, w) in zip(got, want):
            if abs(g - w) > 1e-5 * max(1.0, abs(w)):
                fail(f"{tag}: {g} in TensorBoard, {w} in metrics.jsonl")
    hist = tags["histograms"]
    sizes = tensor_sizes(os.path.join(run, "weights.safetensors"))
    if not sizes:
        fail("the run's weights file names no tensors")
    for kind in ["weights", "grads"]:
        for name, size in sizes.items():
            tag = f"{kind}/{name}"
            if tag not in hist:
                fail(f"no histogram {tag} (have {hist})")
            h = ea.Histograms(tag)
            if [x.step for x in h] != [e["steps"] for e in epochs]:
                fail(f"{tag} at steps {[x.step for x in h]}")
            for x in h:
                v = x.histogram_value
                if v.num != size or sum(v.bucket) != size or not v.min <= v.max:
                    fail(f"{tag}: {v.num} values in {sum(v.bucket)} bucket counts, not {size}")
    n = sum(len(ea.Scalars(t)) for t in tags["scalars"])
    print(f"tensorboard: {len(tags['scalars'])} scalar tags ({n} values), "
          f"{len(hist)} histogram tags, {steps} steps: all checks passed")
    check_tune(descent, work, extra)


def hparams(path):
    """The HParams plugin's data in the event files of `path`, by tag, and the accumulator."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    ea = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(c)
            for tag, c in content.items()}, ea


def check_tune(descent, work, extra):
    import optuna

    db, tb = os.path.join(work, "study.db"), os.path.join(work, "tune")
    subprocess.run(
        [descent, "tune", "--storage", f"sqlite:{db}", "--study", "tb", "--trials", "3",
         "--epochs", "1", "--tensorboard", tb, *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    data, _ = hparams(tb)
    exp = data.get("_hparams_/experiment")
    if exp is None:
        fail(f"{tb} holds no HParams experiment (tags {list(data)})")
    searched = {h.name for h in exp.experiment.hparam_infos}
    if not {"lr", "optimizer", "batch-size"} <= searched:
        fail(f"the experiment's hyperparameters are {searched}")
    metrics = {m.name.tag for m in exp.experiment.metric_infos}
    if not {"trial/objective", "val/acc"} <= metrics:
        fail(f"the experiment's metrics are {metrics}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="tb", storage=f"sqlite:///{db}").trials
    if len(trials) != 3:
        fail(f"the study has {len(trials)} trials")
    for t in trials:
        run = os.path.join(tb, f"trial-{t.number:04d}")
        data, ea = hparams(run)
        start = data.get("_hparams_/session_start_info")
        end = data.get("_hparams_/session_end_info")
        if start is None or end is None:
            fail(f"{run}: session start or end missing (tags {list(data)})")
        got = {}
        for k, v in start.session_start_info.hparams.items():
            got[k] = getattr(v, v.WhichOneof("kind"))
        want = {k: float(v) if isinstance(v, (int, float)) else v for k, v in t.params.items()}
        if got != want:
            fail(f"trial {t.number}: hparams {got}, the study says {want}")
        if end.session_end_info.status != 1:
            fail(f"trial {t.number}: session status {end.session_end_info.status}, not success")
        objective = [s.value for s in ea.Scalars("trial/objective")]
        if len(objective) != 1 or abs(objective[0] - t.value) > 1e-4 * abs(t.value):
            fail(f"trial {t.number}: trial/objective {objective}, the study's value {t.value}")
        acc = [s.value for s in ea.Scalars("val/acc")]
        if len(acc) != 1 or abs(acc[0] - t.value) > 1e-4 * abs(t.value):
            fail(f"trial {t.number}: val/acc {acc} (1 epoch), the study's value {t.value}")
    print(f"tensorboard: HParams experiment of {len(searched)} hyperparameters and "
          f"{len(trials)} trial sessions read back: all checks passed")


if __name__ == "__main__":
    main()
