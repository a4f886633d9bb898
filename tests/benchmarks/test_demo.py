"""``make demo``'s driver without running it (minutes): stage timing, absolute weight paths, the accuracy table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import demo
from models import ModelCard, build_model, save_checkpoint
from models.errors import InputError


def test_stage_times_a_block_and_a_failed_stage_stops_the_demo_naming_it(capsys) -> None:
    stages = demo.Stages()
    with stages.stage("compute"):
        value = 6 * 7
    assert value == 42 and [n for n, _ in stages.times] == ["compute"]
    with pytest.raises(SystemExit, match="stage 'bad' failed: 3 artifacts failed; outputs so far are kept"):
        with stages.stage("bad"):
            raise demo.StageFailed("3 artifacts failed")
    with pytest.raises(SystemExit, match="stage 'input' failed: x.yaml: no such file"):
        with stages.stage("input"):
            raise InputError("x.yaml: no such file")
    out = capsys.readouterr().out
    assert "--- compute:" in out and "--- bad:" in out and "--- input:" in out
    assert "**total**" in stages.table() and "| bad |" in stages.table()


def test_a_bad_dataset_stops_the_demo_at_its_first_stage(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="^demo: stage 'check data' failed: .*no_such_dir") as e:
        demo.main(["--zoo", "--data", str(tmp_path / "no_such_dir"), "--out", str(tmp_path / "run")])
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run" / "export").exists()


def test_weight_paths_in_the_demo_config_are_passed_absolute() -> None:
    values = dict(s.split("=", 1) for s in demo._absolute_weights(demo.CONFIG))
    student = Path(values["student.weights"])
    assert student.is_absolute() and student.is_file()
    assert student.name == "mobilenet_v2_1.0_imagenet_fp16.pth"


def test_weight_paths_that_are_absolute_or_missing_are_left_alone(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("teacher:\n  weights: /abs/t.pth\nstudent:\n  weights: no/such/file.pth\n")
    assert demo._absolute_weights(cfg) == []
    cfg.write_text("student:\n  arch: mobilenet_v2\n")
    assert demo._absolute_weights(cfg) == []


def test_distill_trains_the_ssd_kd_student_of_the_demo_config(tmp_path: Path, monkeypatch) -> None:
    """The stages get the config the CLI calls would have built: data, absolute weights, teacher, method, epochs."""
    from distill import stages

    calls: dict[str, tuple] = {}
    for name in ("train_teacher", "train_ss_head", "train_student"):
        monkeypatch.setattr(stages, name, lambda cfg, out, _name=name, **kw: calls.setdefault(_name, (cfg, out, kw)))
    monkeypatch.setattr(demo, "ZOO", tmp_path / "empty_zoo")  # no zoo teacher: the demo trains one first
    run = tmp_path / "distill"
    assert demo._distill(run, demo.SAMPLE, epochs=3) == run / "student" / "best.pt"
    teacher_cfg, teacher_out, teacher_kw = calls["train_teacher"]
    ss_cfg, ss_out, ss_kw = calls["train_ss_head"]
    student_cfg, student_out, student_kw = calls["train_student"]
    assert (teacher_out, ss_out, student_out) == (run / "teacher", run / "ss_head", run / "student")
    assert teacher_kw == ss_kw == {"overwrite": True}
    assert student_kw == {"ss_head": run / "ss_head" / "ss_head.pt", "overwrite": True}
    for cfg in (teacher_cfg, ss_cfg, student_cfg):
        assert cfg.data.root == str(demo.SAMPLE) and Path(cfg.student.weights).is_absolute()
        assert cfg.data.image_size == 112  # configs/cpu_demo.yaml's
    assert ss_cfg.teacher.checkpoint == student_cfg.teacher.checkpoint == str(run / "teacher" / "best.pt")
    assert ss_cfg.ss_head_optim.epochs == 2
    assert student_cfg.loss.method == "ssd-kd" and student_cfg.student_optim.epochs == 3


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
    (ckpt_dir / "metrics.json").write_text(json.dumps({**_metrics(56, 0.456, 14),
                                                       "balanced_accuracy_ci95": [0.3125, 0.6]}))
    text = "\n".join(demo._accuracy_section(run, ckpt))
    assert "## Student accuracy" in text
    assert "| this run's student | mobilenet_v2-0.35, 112 px, ImageNet init, SSD-KD, 6 epochs | embedded sample, " \
           "**val** split (n=56) | 60.0 % | **45.6 %** [31.2, 60.0] |" in text
    if (demo.ZOO / "student_ssd-kd.test_metrics.json").is_file():
        zoo = json.loads((demo.ZOO / "student_ssd-kd.test_metrics.json").read_text())
        low, high = zoo["balanced_accuracy_ci95"]
        assert f"HAM10000, **test** split (n={zoo['n']})" in text
        assert f"**{100 * zoo['balanced_accuracy']:.1f} %** [{100 * low:.1f}, {100 * high:.1f}]" in text
    assert "Chance balanced accuracy is 12.5 %" in text and "the sample's val split is 25 % NV" in text
    assert "Per-class recall of this run's student" in text and "NV 50 % (n=14)" in text


def test_report_for_the_zoo_student_alone_has_only_the_zoo_row(tmp_path) -> None:
    if not (demo.ZOO / "student_ssd-kd.pt").is_file():
        pytest.skip("no zoo student in this checkout")
    text = "\n".join(demo._accuracy_section(tmp_path, demo.ZOO / "student_ssd-kd.pt"))
    assert "this run's student" not in text and "zoo student" in text


def test_a_metrics_file_written_before_intervals_shows_none() -> None:
    assert demo._interval(_metrics(56, 0.456, 14)) == ""
    assert demo._interval({"balanced_accuracy_ci95": [0.5, 0.75]}) == " [50.0, 75.0]"
