"""The one checkpoint format: a state dict plus a JSON-able model card.

Loaded only with ``torch.load(weights_only=True)``: the card is stored as a JSON string so no
pickled Python objects are ever needed.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.atomic import atomic_save
from models.errors import InputError
from models.net import Classifier
from models.preprocessing import Preprocessing
from models.registry import build_model

CARD_VERSION = 1
ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")


@dataclass
class ModelCard:
    """Everything a consumer needs to use the weights without guessing."""

    arch: str
    num_classes: int
    labels: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    width: float | None = None
    training: dict[str, Any] = field(default_factory=dict)  # resolved config, command, method, seed
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # provenance: dataset root, split file, licence
    # models.calibration.Calibration.to_json() of the temperature fitted on the val split, plus the split's name;
    # empty for a checkpoint written before calibration existed (T = 1)
    calibration: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    card_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if len(self.labels) != self.num_classes:
            raise InputError(f"model card: {len(self.labels)} labels for num_classes={self.num_classes}")
        t = self.calibration.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
            raise InputError(f"model card: calibration.temperature must be a finite number > 0, got {t!r}")

    @property
    def temperature(self) -> float:
        """The fitted softmax temperature; 1.0 (no change) when none was fitted."""
        return float(self.calibration.get("temperature", 1.0))

    def model_kwargs(self) -> dict[str, Any]:
        return {} if self.width is None else {"width": self.width}

    def preprocessing(self, **overrides: Any) -> Preprocessing:
        kw: dict[str, Any] = dict(
            input_size=self.input_size, mean=tuple(self.mean), std=tuple(self.std), labels=tuple(self.labels),
            temperature=self.temperature,
        )
        kw.update(overrides)
        return Preprocessing(**kw)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "model card") -> ModelCard:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as e:
            raise InputError(f"{source}: invalid model card ({e})") from None


def save_checkpoint(path: str | Path, model: Classifier, card: ModelCard, extra: dict[str, Any] | None = None) -> Path:
    """Write ``{"state_dict", "card" (JSON string), **extra}`` atomically (temp file + rename).

    ``extra`` holds plain tensors/numbers only (optimizer state etc.) so ``weights_only`` loading works.
    """
    payload = {"state_dict": model.state_dict(), "card": json.dumps(card.to_json())}
    payload.update(extra or {})
    return atomic_save(path, lambda tmp: torch.save(payload, tmp))


def replace_card(path: str | Path, card: ModelCard, out: str | Path | None = None) -> Path:
    """Write the checkpoint at ``path`` with ``card`` as its model card to ``out`` (default: ``path`` itself),
    atomically; the weights and every other entry are kept as they are."""
    payload, _ = read_checkpoint(path)
    payload["card"] = json.dumps(card.to_json())
    return atomic_save(out if out is not None else path, lambda tmp: torch.save(payload, tmp))


_PICKLED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_tensors(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)``. A file it cannot load is an ``InputError`` "PATH: not WHAT (why)":
    corrupt, or refused because it holds a pickled Python object (never unpickled: ours hold tensors and plain
    data only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: whether it loads is what counts
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for foreign/corrupt files
        pickled = _PICKLED_GLOBAL.search(str(e))
        why = (f"refused: it holds a pickled Python object, {pickled.group(1)}; only tensors and plain data are loaded"
               if pickled else "corrupt, truncated or not a PyTorch file")
        raise InputError(f"{path}: not {what} ({why})") from None


def state_dict_problem(err: RuntimeError) -> str:
    """The first problem ``load_state_dict`` reports (its message starts with a header line, then one line per
    kind of problem), a list of keys (there can be hundreds) shortened after a whole key."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
    cut = first.rfind('", ', 0, 160)
    return first[: cut + 1] + ", ..." if len(first) > 160 and cut > 0 else first


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], ModelCard]:
    """Load the raw payload and card of a checkpoint (no model built)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    payload = load_tensors(path, "an ssdkd checkpoint")
    if not isinstance(payload, dict) or "state_dict" not in payload or "card" not in payload:
        raise InputError(f"{path}: not an ssdkd checkpoint (expected keys 'state_dict' and 'card')")
    try:
        card = ModelCard.from_json(json.loads(payload["card"]), f"{path}")
    except (TypeError, json.JSONDecodeError):
        raise InputError(f"{path}: model card is not valid JSON") from None
    return payload, card


def load_checkpoint(
    path: str | Path, arch: str | None = None, num_classes: int | None = None
) -> tuple[Classifier, ModelCard]:
    """Rebuild the model from its card and load the weights (eval mode).

    ``arch``/``num_classes``, when given, must match the card: loading a checkpoint of another
    architecture or class count is an error, not a silent partial load.
    """
    payload, card = read_checkpoint(path)
    if arch is not None and card.arch != arch:
        raise InputError(f"{path}: checkpoint is a {card.arch!r}, expected {arch!r}")
    if num_classes is not None and card.num_classes != num_classes:
        raise InputError(f"{path}: checkpoint has {card.num_classes} classes, expected {num_classes}")
    model = build_model(card.arch, card.num_classes, **card.model_kwargs())
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not match {card.arch} ({state_dict_problem(e)})") from None
    return model.eval(), card
