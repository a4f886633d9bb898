"""What one benchmark run measures, settled before anything is timed: the artifacts with their preprocessing
contracts (or, for ``--reference`` files, the input read from the model), the labelled images, the thread counts
and the timing rule. Host runs (``host``) and phone runs (``android``) both work from a :class:`Plan`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.accuracy import EvalSet, load_eval_set
from benchmarks.artifacts import Artifact, discover
from benchmarks.runners import InputSpec, RunnerError, read_model
from models.errors import InputError
from models.preprocessing import Preprocessing


@dataclass(frozen=True)
class Timing:
    """Every row is timed for at least ``runs`` runs and ``min_seconds`` after ``warmup`` runs; a row still short of
    that after ``max_seconds`` fails (no figures from fewer runs)."""

    runs: int = 200
    min_seconds: float = 5.0
    warmup: int = 20
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise InputError(f"--runs must be >= 1, got {self.runs}")
        if self.min_seconds < 0 or self.warmup < 0:
            raise InputError("--min-seconds and --warmup must be >= 0")
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            raise InputError(f"--max-seconds {self.max_seconds:g} is below --min-seconds {self.min_seconds:g}")

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "min_seconds": self.min_seconds, "warmup": self.warmup,
                "max_seconds": self.max_seconds}


@dataclass(frozen=True)
class Plan:
    """The artifacts of one run (those that cannot be run included: they become failed rows) and what they are fed."""

    artifacts: list[Artifact]
    pres: dict[Path, Preprocessing]  # contract of every runnable artifact that has one
    ref_specs: dict[Path, InputSpec]  # input read from each loadable --reference file
    evalset: EvalSet | None
    threads: list[int]
    checkpoint: Path | None  # the PyTorch reference's checkpoint, when there is one

    @property
    def runnable(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.problem is None]

    @property
    def broken(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.problem is not None]

    def input_text(self) -> str:
        """What the timed runs are fed, for the results' settings."""
        parts = []
        if any(not a.contractless for a in self.artifacts):
            parts.append((f"first image of --data ({self.evalset.paths[0].name})" if self.evalset is not None
                          else "synthetic pixels (seed 0)") + " through each artifact's preprocessing")
        if any(a.contractless for a in self.artifacts):
            parts.append("--reference files: random data of the model's own input shape and dtype (seed 0)")
        return "; ".join(parts)


def make_plan(paths: Sequence[str | Path], *, runtimes: tuple[str, ...], threads: list[int],
              checkpoint: str | Path | None, references: Sequence[str | Path], data: str | Path | None,
              split: str | None, split_file: str | Path | None, max_images: int | None) -> Plan:
    """Find the artifacts, read their contracts and the labelled images (``--split`` defaults to the split file
    of the checkpoint's card)."""
    artifacts, ckpt = discover(list(paths), checkpoint, runtimes, list(references))
    if split is not None and split_file is None and ckpt is not None:
        split_file = _card_split_file(ckpt)
    evalset = load_eval_set(data, split, split_file, max_images) if data is not None else None
    pres = {a.path: preprocessing_for(a) for a in artifacts if a.problem is None and not a.contractless}
    artifacts, ref_specs = read_references(artifacts)
    return Plan(artifacts, pres, ref_specs, evalset, threads, ckpt)


def parse_threads(spec: str | Sequence[int]) -> list[int]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        out = [int(t) for t in items if str(t).strip()]
    except ValueError:
        raise InputError(f"--threads must be comma-separated integers, got {spec!r}") from None
    if not out or min(out) < 1:
        raise InputError(f"--threads must list integers >= 1, got {spec!r}")
    return list(dict.fromkeys(out))


def preprocessing_for(artifact: Artifact) -> Preprocessing:
    """The artifact's contract: its sidecar, or the checkpoint card for the PyTorch reference."""
    if artifact.preprocessing is not None:
        return Preprocessing.load(artifact.preprocessing)
    from models import read_checkpoint

    _, card = read_checkpoint(artifact.path)
    return card.preprocessing(**({"input_size": artifact.input_size} if artifact.input_size else {}))


def input_spec(pre: Preprocessing) -> InputSpec:
    return InputSpec(pre.layout, pre.input_size, pre.input_dtype, tuple(pre.mean), tuple(pre.std))


def read_references(artifacts: list[Artifact]) -> tuple[list[Artifact], dict[Path, InputSpec]]:
    """Each --reference file with the precision and input spec read from the model itself; a file its runtime
    cannot load keeps precision unknown and becomes a failed row (like any artifact that cannot be run)."""
    out, specs = [], {}
    for a in artifacts:
        if not a.contractless or a.problem is not None:
            out.append(a)
            continue
        try:
            spec, precision = read_model(a)
        except RunnerError as e:
            out.append(replace(a, problem=str(e)))
            continue
        specs[a.path] = spec
        out.append(replace(a, precision=precision))
    return out, specs


def _card_split_file(ckpt: Path) -> Path | None:
    from models import read_checkpoint

    _, card = read_checkpoint(ckpt)
    name = (card.data or {}).get("split_file")
    return (ckpt.parent / name) if name else None
