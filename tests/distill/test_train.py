"""Short real runs on the embedded sample: every stage, loss goes down, kill/resume, DDP, NaN guard, bad configs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from distill import stages
from distill.cli import main as distill_main
from distill.config import load_config
from distill.engine import TrainingDiverged
from models import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.image_size=48", "data.num_workers=0", "data.max_train_images=96", "seed=3",
        "teacher.arch=mobilenet_v2", "teacher.width=0.35", "teacher.weights=null",
        "student.arch=mobilenet_v2", "student.width=0.35", "student.weights=null",
        "teacher_optim.batch_size=16", "ss_head_optim.batch_size=16", "student_optim.batch_size=16",
        "teacher_optim.lr=0.02", "ss_head_optim.lr=0.02", "student_optim.lr=0.02", "runtime.threads=1"]


def _cfg(sample_root: Path, *extra: str):
    return load_config(REPO / "configs" / "cpu_demo.yaml", [*TINY, f"data.root={sample_root}", *extra])


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, sample_root) -> Path:
    run = tmp_path_factory.mktemp("teacher")
    stages.train_teacher(_cfg(sample_root, "teacher_optim.epochs=2"), run)
    stages.train_ss_head(_cfg(sample_root, "ss_head_optim.epochs=1", f"teacher.checkpoint={run}"), run / "ss_head")
    return run


def test_teacher_run_dir_has_every_output(teacher_run: Path) -> None:
    for name in ("best.pt", "last.pt", "config.yaml", "split.json", "history.csv", "metrics.json",
                 "confusion_matrix.png", "learning_curve.png", "reliability.png", "ss_head/ss_head.pt"):
        assert (teacher_run / name).is_file(), name
    model, card = load_checkpoint(teacher_run / "best.pt")
    assert card.arch == "mobilenet_v2" and card.input_size == 48 and card.labels[0] == "MEL"
    assert card.training["stage"] == "teacher" and "CC BY-NC" in card.data["licence"]
    metrics = json.loads((teacher_run / "metrics.json").read_text())
    assert {"accuracy", "balanced_accuracy", "macro_auc", "confusion_matrix", "per_class"} <= set(metrics)
    low, high = metrics["balanced_accuracy_ci95"]  # resampled val lesions: the demo report shows it
    assert 0 <= low <= metrics["balanced_accuracy"] <= high <= 1
    # the temperature fitted on the val split is in the card and metrics.json, and the contract takes it from the card
    assert card.calibration == metrics["calibration"] and card.calibration["split"] == "val"
    assert {"temperature", "ece_before", "ece_after", "n", "bins"} <= set(card.calibration)
    assert card.calibration["n"] == metrics["n"] and card.preprocessing().temperature == card.temperature > 0


@pytest.mark.slow
def test_ssd_kd_short_run_lowers_training_loss(teacher_run: Path, sample_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(sample_root, "student_optim.epochs=3", f"teacher.checkpoint={teacher_run}", "loss.method=ssd-kd")
    metrics = stages.train_student(cfg, tmp_path)
    hist = _history(tmp_path)
    losses = [float(h["train_loss"]) for h in hist]
    assert losses[-1] < losses[0], losses
    assert {"train_ce", "train_kd", "train_rot", "train_sim", "train_dist", "train_angle", "train_gram"} <= set(hist[0])
    assert metrics["n"] == len(json.loads((tmp_path / "split.json").read_text())["val"])
    # the student reuses the teacher's split: no image the teacher validated on is a student training image
    assert json.loads((tmp_path / "split.json").read_text())["val"] == json.loads(
        (teacher_run / "split.json").read_text())["val"]


@pytest.mark.parametrize("method", ["d-kd", "kd", "rkd", "scratch"])
def test_every_baseline_runs_one_epoch(method: str, teacher_run: Path, sample_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(sample_root, "student_optim.epochs=1", f"teacher.checkpoint={teacher_run}", f"loss.method={method}",
               "data.max_train_images=32")
    metrics = stages.train_student(cfg, tmp_path)
    _, card = load_checkpoint(tmp_path / "best.pt")
    assert card.training["method"] == method and card.width == 0.35
    assert card.calibration == metrics["calibration"] and (tmp_path / "reliability.png").is_file()


def test_calibrate_an_existing_checkpoint_and_evaluate_reports_ece(teacher_run: Path, sample_root: Path,
                                                                   tmp_path: Path, capsys) -> None:
    from models.checkpoint import replace_card

    _, card = load_checkpoint(teacher_run / "best.pt")
    bare = replace_card(teacher_run / "best.pt", replace(card, calibration={}), tmp_path / "bare" / "best.pt")
    split = str(teacher_run / "split.json")
    assert distill_main(["evaluate", str(bare), "--data", str(sample_root), "--split", "val", "--split-file", split,
                         "--out", str(tmp_path / "bare.json")]) == 0
    assert "no fitted temperature, so T = 1" in capsys.readouterr().out
    uncalibrated = json.loads((tmp_path / "bare.json").read_text())["calibration"]
    assert uncalibrated["temperature"] == 1.0 and uncalibrated["ece_after"] == uncalibrated["ece_before"]

    out = tmp_path / "calibrated" / "best.pt"
    assert distill_main(["calibrate", str(bare), "--data", str(sample_root), "--split-file", split,
                         "--out", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    model, calibrated = load_checkpoint(out)
    assert calibrated.calibration == card.calibration  # the same fit as at the end of training
    assert (out.parent / "reliability.png").is_file() and not list(out.parent.glob(".*"))
    _, still_bare = load_checkpoint(bare)
    assert still_bare.calibration == {}  # --out leaves the input alone
    assert distill_main(["evaluate", str(out), "--data", str(sample_root), "--split", "val", "--split-file", split,
                         "--out", str(tmp_path / "cal.json")]) == 0
    assert f"at T = {card.temperature:.2f}" in capsys.readouterr().out
    fitted = json.loads((tmp_path / "cal.json").read_text())["calibration"]
    assert fitted["fitted"] and fitted["ece_after"] == pytest.approx(card.calibration["ece_after"])
    assert distill_main(["calibrate", str(tmp_path / "none.pt"), "--data", str(sample_root)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_evaluate_gives_an_interval_and_per_image_predictions_that_compare_pairs(teacher_run: Path,
                                                                                 sample_root: Path, tmp_path: Path,
                                                                                 capsys) -> None:
    src, split = teacher_run / "best.pt", str(teacher_run / "split.json")
    args = ["--data", str(sample_root), "--split-file", split]
    assert distill_main(["evaluate", str(src), *args, "--split", "val", "--out", str(tmp_path / "val.json")]) == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "val.json").read_text())
    low, high = m["balanced_accuracy_ci95"]
    assert low <= m["balanced_accuracy"] <= high and f"[95 % {low:.4f}, {high:.4f}]" in printed
    rows = m["predictions"]
    assert len(rows["image"]) == len(rows["pred"]) == m["n"] and len(set(rows["image"])) == m["n"]
    assert sum(p == y for p, y in zip(rows["pred"], rows["label"])) / m["n"] == pytest.approx(m["accuracy"])
    assert [sum(1 for y in rows["label"] if y == c) for c in range(len(m["labels"]))] == \
        [m["per_class"][k]["support"] for k in m["labels"]]

    val = str(tmp_path / "val.json")
    assert distill_main(["compare", val, val]) == 0
    assert "balanced accuracy +0.0 pt [95 % +0.0, +0.0]" in capsys.readouterr().out
    assert distill_main(["evaluate", str(src), *args, "--split", "train", "--out", str(tmp_path / "train.json")]) == 0
    capsys.readouterr()
    assert distill_main(["compare", val, str(tmp_path / "train.json")]) == 2
    assert "not of the same images" in capsys.readouterr().err
    empty = tmp_path / "empty_test.json"
    empty.write_text(json.dumps({**json.loads(Path(split).read_text()), "test": []}))
    assert distill_main(["evaluate", str(src), "--data", str(sample_root), "--split-file", str(empty)]) == 2
    assert f"{empty}: the test split is empty" in capsys.readouterr().err
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in m.items() if k != "predictions"}))
    assert distill_main(["compare", val, str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{old}: no per-image 'predictions'" in err
    old.write_text(json.dumps({**m, "predictions": {**rows, "group": rows["group"][1:]}}))
    assert distill_main(["compare", val, str(old)]) == 2
    assert "'predictions' must hold equally long lists image, group, label, pred" in capsys.readouterr().err


def test_adjust_folds_the_balancing_shift_into_the_bias(teacher_run: Path, sample_root: Path, tmp_path: Path,
                                                         capsys) -> None:
    from distill.data import load_labeled_images, load_split
    from distill.logit_adjust import balancing_tau, class_prior

    src, split = teacher_run / "best.pt", str(teacher_run / "split.json")
    # trained with the official weights (class_weight_power 1): nothing is left to balance unless --tau says so
    assert distill_main(["adjust", str(src), "--data", str(sample_root), "--out", str(tmp_path / "a.pt")]) == 2
    assert "class_weight_power 1" in capsys.readouterr().err
    assert distill_main(["adjust", str(src), "--data", str(sample_root), "--out", str(src)]) == 2
    assert "not over its source" in capsys.readouterr().err

    out = tmp_path / "adjusted" / "best.pt"
    assert distill_main(["adjust", str(src), "--data", str(sample_root), "--tau", "1", "--split-file", split,
                         "--out", str(out)]) == 0
    assert "(tau 1);" in capsys.readouterr().out
    before, card = load_checkpoint(src)
    after, adjusted = load_checkpoint(out)
    ds = load_labeled_images(sample_root)
    train = [r.label for r in ds.subset(load_split(split, ds).ids("train"))]
    prior = torch.tensor(class_prior(train, card.num_classes, where="test"), dtype=torch.float32)
    x = torch.randn(4, 3, card.input_size, card.input_size)
    with torch.no_grad():
        shift = after(x) - before(x)
    # the same shift for every image: -log(prior) up to the common offset softmax ignores
    expected = -(prior.log() - prior.log().mean())
    assert torch.allclose(shift, expected.expand_as(shift), atol=1e-4)
    assert int(shift[0].argmax()) == int(prior.argmin())  # the rarest class gains most
    record = adjusted.training["logit_adjustment"]
    assert record["tau"] == 1.0 and record["prior"] == pytest.approx(prior.tolist(), abs=1e-6)
    assert record["source_metrics"] == card.metrics
    # the card's metrics and temperature are re-measured on the adjusted logits, and evaluate agrees with them
    assert adjusted.calibration["split"] == "val" and (out.parent / "reliability.png").is_file()
    m = stages.evaluate_checkpoint(out, sample_root, "val", split)
    assert adjusted.metrics["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
    assert adjusted.metrics["n"] == m["n"]

    assert distill_main(["adjust", str(out), "--data", str(sample_root), "--tau", "1", "--split-file", split,
                         "--out", str(tmp_path / "twice.pt")]) == 2
    assert "already logit-adjusted" in capsys.readouterr().err
    half = replace(card, training={**card.training, "config": {"loss": {"class_weight_power": 0.5}}})
    assert balancing_tau(half) == 0.5 and balancing_tau(card) == 0.0


def test_recall_offset_is_the_smallest_that_reaches_the_recall() -> None:
    import numpy as np

    from distill.logit_adjust import recall_offset
    from models.errors import InputError

    # four rows of class 0, with margins (best other logit minus their own) -1, 0.5, 1 and 2; one row of class 1
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.0, 3.0, 0.0]])
    labels = np.array([0, 0, 0, 0, 1])

    def recall(offset: float) -> float:
        shifted = logits + np.array([offset, 0.0, 0.0])
        return float((shifted[labels == 0].argmax(axis=1) == 0).mean())

    assert recall_offset(logits, labels, 0, 0.25) == 0.0  # already met: no shift
    for target, margin in ((0.5, 0.5), (0.75, 1.0), (1.0, 2.0)):
        offset = recall_offset(logits, labels, 0, target)
        assert offset == pytest.approx(margin, abs=1e-3) and recall(offset) >= target > recall(offset - 2e-4)
    with pytest.raises(InputError, match="must be in"):
        recall_offset(logits, labels, 0, 0.0)
    with pytest.raises(InputError, match="class index 2: no val images"):
        recall_offset(logits, labels, 2, 0.5)


def test_operating_point_brings_one_class_to_its_recall(teacher_run: Path, sample_root: Path, tmp_path: Path,
                                                        capsys) -> None:
    src, split = teacher_run / "best.pt", str(teacher_run / "split.json")
    out = tmp_path / "op" / "best.pt"
    args = ["operating-point", str(src), "--data", str(sample_root), "--split-file", split]
    assert distill_main([*args, "--min-recall", "MEL=1", "--out", str(out)]) == 0
    assert "MEL recall" in capsys.readouterr().out
    before, card = load_checkpoint(src)
    after, moved = load_checkpoint(out)
    x = torch.randn(4, 3, card.input_size, card.input_size)
    with torch.no_grad():
        shift = after(x) - before(x)
    # one constant offset, on MEL's logit only
    mel = card.labels.index("MEL")
    assert (shift[:, mel] > 0).all() and torch.allclose(shift[:, mel], shift[0, mel])
    assert torch.allclose(torch.cat([shift[:, :mel], shift[:, mel + 1:]], 1), torch.zeros(4, card.num_classes - 1),
                          atol=1e-5)
    record = moved.training["operating_point"]
    assert record["label"] == "MEL" and record["min_recall"] == 1.0 and record["source_metrics"] == card.metrics
    m = stages.evaluate_checkpoint(out, sample_root, "val", split)
    assert m["per_class"]["MEL"]["recall"] == 1.0
    assert moved.metrics["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
    assert moved.calibration["split"] == "val" and (out.parent / "reliability.png").is_file()

    assert distill_main(["operating-point", str(out), *args[2:], "--min-recall", "MEL=0.5",
                         "--out", str(tmp_path / "twice.pt")]) == 2
    assert "already has an operating point" in capsys.readouterr().err
    assert distill_main([*args, "--min-recall", "XYZ=0.5", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'XYZ' is not one of the checkpoint's labels" in err
    with pytest.raises(SystemExit):
        distill_main([*args, "--min-recall", "MEL", "--out", str(tmp_path / "x.pt")])
    assert "expected LABEL=RECALL such as MEL=0.9, got 'MEL'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distill_main([*args, "--min-recall", "MEL=1.5", "--out", str(tmp_path / "x.pt")])
    assert "a recall must be in (0, 1], got 1.5 in 'MEL=1.5'" in capsys.readouterr().err

    from distill.data import load_labeled_images

    ds = load_labeled_images(sample_root)
    layout = json.loads(Path(split).read_text())
    mel_val = {r.image_id for r in ds.subset(layout["val"]) if ds.classes[r.label] == "MEL"}
    assert mel_val, "the sample's val split has melanomas"
    no_mel = tmp_path / "no_mel_val.json"
    no_mel.write_text(json.dumps({**layout, "val": [i for i in layout["val"] if i not in mel_val],
                                  "train": layout["train"] + sorted(mel_val)}))
    assert distill_main(["operating-point", str(src), "--data", str(sample_root), "--split-file", str(no_mel),
                         "--min-recall", "MEL=0.9", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{no_mel}: the val split has no MEL images" in err


def test_a_prior_needs_every_class() -> None:
    from distill.logit_adjust import class_prior
    from models.errors import InputError

    assert class_prior([0, 1, 1, 2], 3, where="s.json").tolist() == [0.25, 0.5, 0.25]
    with pytest.raises(InputError, match="s.json: no train images of class index 2"):
        class_prior([0, 1, 1], 3, where="s.json")


def _cli(sample_root: Path, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "distill.cli", "student", "--config", str(REPO / "configs" / "cpu_demo.yaml"),
            "--data", str(sample_root), "--out", str(out), "--method", "scratch"]
    for s in [*TINY, "data.image_size=32", "data.max_train_images=64", "student_optim.epochs=3", *extra]:
        args += ["--set", s]
    return args


@pytest.mark.slow
def test_kill_9_and_resume_gives_the_same_weights(sample_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_cli(sample_root, tmp_path / "full"), check=True, cwd=REPO, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(sample_root, tmp_path / "killed"), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = torch.load(last, weights_only=True)["epoch"]
    assert done < 2, "the run finished before it could be killed"
    subprocess.run(_cli(sample_root, tmp_path / "killed") + ["--resume"], check=True, cwd=REPO, env=env,
                   capture_output=True)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["task"]
    b = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["task"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert len(_history(tmp_path / "killed")) == 3


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(sample_root: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [str(torchrun), "--standalone", "--nproc_per_node", "2"] + _cli(sample_root, tmp_path)[1:]
    args += ["--set", "student_optim.epochs=1", "--set", "runtime.device=cpu"]
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    sync = json.loads((tmp_path / "metrics.json").read_text())["ddp_sync"]
    assert sync["world_size"] == 2 and sync["in_sync"], sync


def test_non_finite_loss_stops_with_the_term_named(sample_root: Path, tmp_path: Path, monkeypatch) -> None:
    import distill.tasks as tasks

    def nan_loss(logits, targets, class_weights):
        return {"ce": logits.sum() * float("nan"), "total": logits.sum() * float("nan")}

    monkeypatch.setattr(tasks, "scratch_loss", nan_loss)
    cfg = _cfg(sample_root, "student_optim.epochs=1", "loss.method=scratch", "data.max_train_images=32")
    with pytest.raises(TrainingDiverged, match=r"loss term 'ce' became nan"):
        stages.train_student(cfg, tmp_path)
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "split.json").is_file()


@pytest.mark.parametrize("override,match", [
    ("loss.method=foo", "unknown method 'foo'"),
    ("loss.ssd_kd.gram=-1", "gram is a weight and must be finite and >= 0"),
    ("loss.ssd_kd.kd_T=0", "kd_T is a temperature"),
    ("loss.d_kd.kd_T=-2", "kd_T is a temperature"),
    ("student_optim.epochs=zero", "expected an integer"),
    ("studnet.arch=x", "unknown config key 'studnet'"),
])
def test_bad_config_values_are_one_line_errors(override: str, match: str, sample_root, tmp_path, capsys) -> None:
    rc = distill_main(["student", "--data", str(sample_root), "--out", str(tmp_path), "--set", override])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1, err


def test_missing_teacher_and_data_are_clear(sample_root, tmp_path, capsys) -> None:
    assert distill_main(["student", "--data", str(sample_root), "--out", str(tmp_path), "--method", "kd"]) == 2
    assert "no teacher" in capsys.readouterr().err
    assert distill_main(["teacher", "--out", str(tmp_path)]) == 2
    assert "no dataset" in capsys.readouterr().err
