"""``make demo``'s driver without running it (minutes): stage timing, absolute weight paths, the accuracy table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import demo
from models import ModelCard, build_model, save_checkpoint


def test_stage_times_a_block_and_run_stops_on_a_failed_stage(capsys) -> None:
    stages = demo.Stages()
    with stages.stage("compute"):
        value = 6 * 7
    assert value == 42 and [n for n, _ in stages.times] == ["compute"]
    stages.run("ok", lambda: 0)
    with pytest.raises(SystemExit, match="stage 'bad' failed"):
        stages.run("bad", lambda: 3)
    out = capsys.readouterr().out
    assert "--- compute:" in out and "--- bad:" in out
    assert "**total**" in stages.table() and "| bad |" in stages.table()


def test_weight_paths_in_the_demo_config_are_passed_absolute() -> None:
    sets = demo._absolute_weights(demo.CONFIG)
    values = dict(s.split("=", 1) for s in sets[1::2])
    assert sets[::2] == ["--set"] * len(values)
    student = Path(values["student.weights"])
    assert student.is_absolute() and student.is_file()
    assert student.name == "mobilenet_v2_1.0_imagenet_fp16.pth"


def test_weight_paths_that_are_absolute_or_missing_are_left_alone(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("teacher:\n  weights: /abs/t.pth\nstudent:\n  weights: no/such/file.pth\n")
    assert demo._absolute_weights(cfg) == []
    cfg.write_text("student:\n  arch: mobilenet_v2\n")
    assert demo._absolute_weights(cfg) == []


def _metrics(n: int, bacc: float, nv: int) -> dict:
    labels = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    rest = (n - nv) // 7
    support = {c: (nv if c == "NV" else rest) for c in labels}
    return {"n": n, "accuracy": 0.6, "balanced_accuracy": bacc, "macro_auc": 0.9, "labels": labels,
            "per_class": {c: {"recall": 0.5, "support": support[c]} for c in labels}}


def test_report_puts_the_demo_students_val_figures_beside_the_zoo_students_test_figures(tmp_path) -> None:
    run = tmp_path / "run"
    ckpt_dir = run / "distill" / "student"
    ckpt_dir.mkdir(parents=True)
    model = build_model("mobilenet_v2", 8, width=0.35)
    card = ModelCard(arch="mobilenet_v2", width=0.35, num_classes=8,
                     labels=["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"], input_size=112,
                     mean=[0.5] * 3, std=[0.5] * 3,
                     training={"stage": "student", "method": "ssd-kd",
                               "config": {"student": {"weights": "/x/mobilenet_v2_1.0_imagenet_fp16.pth"},
                                          "student_optim": {"epochs": 6}}})
    ckpt = save_checkpoint(ckpt_dir / "best.pt", model, card)
    (ckpt_dir / "metrics.json").write_text(json.dumps(_metrics(56, 0.456, 14)))
    text = "\n".join(demo._accuracy_section(run, ckpt))
    assert "## Student accuracy" in text
    assert "| this run's student | mobilenet_v2-0.35, 112 px, ImageNet init, SSD-KD, 6 epochs | embedded sample, " \
           "**val** split (n=56) | 60.0 % | **45.6 %** |" in text
    if (demo.ZOO / "student_ssd-kd.test_metrics.json").is_file():
        zoo = json.loads((demo.ZOO / "student_ssd-kd.test_metrics.json").read_text())
        assert f"HAM10000, **test** split (n={zoo['n']})" in text
        assert f"**{100 * zoo['balanced_accuracy']:.1f} %**" in text
    assert "Chance balanced accuracy is 12.5 %" in text and "the sample's val split is 25 % NV" in text
    assert "Per-class recall of this run's student" in text and "NV 50 % (n=14)" in text


def test_report_for_the_zoo_student_alone_has_only_the_zoo_row(tmp_path) -> None:
    if not (demo.ZOO / "student_ssd-kd.pt").is_file():
        pytest.skip("no zoo student in this checkout")
    text = "\n".join(demo._accuracy_section(tmp_path, demo.ZOO / "student_ssd-kd.pt"))
    assert "this run's student" not in text and "zoo student" in text
