"""The registry of distillation methods: every row agrees with the config, the CLI, the task, its own loss and the
docs. Tiny tensors and 0.35-width networks: seconds in all."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from distill.cli import build_parser
from distill.cli import main as distill_main
from distill.config import LossConfig, load_config
from distill.heads import SSHead
from distill.methods import METHODS, LossInputs, Method, TeacherOutput, method_named
from distill.tasks import DistillTask
from models import build_model
from models.errors import InputError
from models.net import Features

REPO = Path(__file__).resolve().parents[2]
DISTILLED = [name for name, m in METHODS.items() if m.loss is not None]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_accepted_by_the_config_and_brings_its_own_weights(name: str) -> None:
    cfg = load_config(overrides=[f"loss.method={name}"])
    method = METHODS[name]
    weights = cfg.loss.weights()
    assert (weights is None) == (method.weights is None) == (method.config_key is None)
    if weights is not None:
        assert type(weights) is method.weights


def test_the_config_sections_and_the_cli_choices_are_the_registry() -> None:
    # the nested sections; scalar options such as `method` are not a method's weights
    sections = {f.name: f.type for f in dataclasses.fields(LossConfig) if f.default_factory is not dataclasses.MISSING}
    assert sections == {m.config_key: m.weights.__name__ for m in METHODS.values() if m.config_key}
    student = build_parser()._subparsers._group_actions[0].choices["student"]
    (flag,) = [a for a in student._actions if "--method" in a.option_strings]
    assert list(flag.choices) == list(METHODS)


@pytest.mark.parametrize("method", METHODS.values(), ids=list(METHODS))
def test_each_row_is_consistent(method: Method) -> None:
    # The rotated batch exists for the self-supervision terms, which need the teacher's SS head.
    assert method.rotates_batch == method.needs_ss_head
    # Without a teacher the student trains on SupervisedTask's weighted CE: no distillation loss, nothing to weigh.
    assert (method.loss is None) == (not method.needs_teacher) == (method.weights is None)


@pytest.mark.parametrize("bad,hint", [("sskd", "; did you mean 'ssd-kd'?"), ("foo", "")])
def test_an_unknown_method_is_one_line_naming_the_closest(bad: str, hint: str, sample_root, tmp_path, capsys) -> None:
    expected = f"loss.method: unknown method {bad!r}{hint} (expected one of ssd-kd, d-kd, kd, rkd, scratch)"
    with pytest.raises(InputError) as e:
        load_config(overrides=[f"loss.method={bad}"])
    assert str(e.value) == expected
    with pytest.raises(InputError, match=re.escape(expected)):
        method_named(bad)
    rc = distill_main(["student", "--data", str(sample_root), "--out", str(tmp_path), "--set", f"loss.method={bad}"])
    assert rc == 2 and capsys.readouterr().err == f"ssdkd-distill: error: {expected}\n"
    assert not any(tmp_path.iterdir())


def _inputs(method: Method, nan: TeacherOutput | None) -> LossInputs:
    """Random inputs for ``method``'s loss, with one teacher output (``nan``) poisoned."""
    g = torch.Generator().manual_seed(0)
    images, classes = 4, 8
    rows = 4 * images if method.rotates_batch else images

    def features(channels: int, poison: frozenset[TeacherOutput] = frozenset()) -> Features:
        fmap = torch.rand(rows, channels, 3, 3, generator=g)
        emb, logits = torch.randn(rows, channels, generator=g), torch.randn(rows, classes, generator=g)
        return Features(*(t * float("nan") if kind in poison else t for t, kind in
                          ((fmap, TeacherOutput.FEATURE_MAP), (emb, TeacherOutput.EMBEDDING),
                           (logits, TeacherOutput.LOGITS))))

    poison = frozenset({nan} if nan else ())
    student, teacher = features(5), features(6, poison)
    sims = {}
    if method.needs_ss_head:
        t_sim = torch.rand(rows * 3 // 4, images, generator=g)
        sims = {"student_sim": torch.rand(rows * 3 // 4, images, generator=g),
                "teacher_sim": t_sim * float("nan") if nan is TeacherOutput.SS_HEAD else t_sim}
    return LossInputs(student, teacher, torch.arange(images) % classes, torch.rand(classes, generator=g) + 0.5,
                      student_fmap_projected=torch.rand(rows, 6, 3, 3, generator=g), **sims)


@pytest.mark.parametrize("name", DISTILLED)
def test_the_loss_reads_exactly_what_the_teacher_must_provide(name: str) -> None:
    method = METHODS[name]
    weights = method.weights()
    assert torch.isfinite(method.loss(_inputs(method, None), weights)["total"])
    for output in TeacherOutput:
        total = method.loss(_inputs(method, output), weights)["total"]
        assert bool(torch.isnan(total)) == (output in method.teacher_provides), output


@pytest.mark.parametrize("name", DISTILLED)
def test_the_task_builds_the_heads_and_batch_its_row_asks_for(name: str) -> None:
    method = METHODS[name]
    torch.manual_seed(0)
    teacher, student = build_model("mobilenet_v2", 8, width=0.35), build_model("mobilenet_v2", 8, width=0.35)
    seen = []
    forward_features = student.forward_features
    student.forward_features = lambda x: seen.append(x.shape[0]) or forward_features(x)
    task = DistillTask(student, teacher, torch.ones(8), LossConfig(method=name), SSHead(teacher.feature_dim))
    weights = method.weights()
    assert hasattr(task, "conv_reg") == (method.gram_weight(weights) > 0)
    assert hasattr(task, "ss_head") == (method.needs_ss_head and method.sim_weight(weights) > 0)
    assert hasattr(task.frozen, "ss_head") == method.needs_ss_head
    x, y = torch.randn(2, 3, 64, 64), torch.arange(2)
    terms = task.train()(x, y)
    assert seen == [8 if method.rotates_batch else 2]
    assert terms.keys() == method.loss(_inputs(method, None), weights).keys()
    if method.needs_ss_head:
        with pytest.raises(ValueError, match=f"{name} needs the teacher's trained SS head"):
            DistillTask(student, teacher, torch.ones(8), LossConfig(method=name))


def test_the_docs_table_is_the_registry() -> None:
    text = (REPO / "docs" / "distillation.md").read_text()
    section = text.split("## The other methods (`--method`)", 1)[1].split("\n## ", 1)[0]
    rows = {m: (batch, provides) for m, batch, provides in
            re.findall(r"^\| `([^`]+)` \| (\w+)[^|]*\|[^|]*\| ([^|]*) \|$", section, re.M)}
    assert list(rows) == list(METHODS)
    for name, (batch, provides) in rows.items():
        method = METHODS[name]
        assert (batch == "rotated") == method.rotates_batch, name
        listed = set() if provides.strip() == "–" else {p.strip() for p in provides.split(",")}
        assert listed == {o.value for o in method.teacher_provides}, name
