"""Is one checkpoint better than another on the same split? A paired lesion bootstrap of the balanced-accuracy
change between two ``ssdkd-distill evaluate --out`` files.

Pairing matters here: with 17-30 images in the small classes, the interval of one model's balanced accuracy is
several points wide, but two models err on mostly the same images, so their difference is known far better.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.metrics import paired_bacc_change
from models.errors import InputError

PREDICTION_KEYS = ("image", "group", "label", "pred")


def read_evaluation(path: str | Path) -> dict:
    """An ``evaluate --out`` file with its per-image predictions (files written before they existed have none)."""
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: evaluation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a JSON evaluation file ({e})") from None
    if not isinstance(m, dict) or not isinstance(m.get("predictions"), dict):
        raise InputError(f"{path}: no per-image 'predictions'; write it again with "
                         "`ssdkd-distill evaluate CHECKPOINT --data D --out FILE`")
    rows = m["predictions"]
    columns = [rows.get(k) for k in PREDICTION_KEYS]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise InputError(f"{path}: 'predictions' must hold equally long lists {', '.join(PREDICTION_KEYS)}")
    return m


def compare_evaluations(a: str | Path, b: str | Path) -> dict:
    """``bacc(a) - bacc(b)`` in points with its 95 % paired interval; both files must cover the same images."""
    ea, eb = read_evaluation(a), read_evaluation(b)
    try:
        change = paired_bacc_change(ea["predictions"], eb["predictions"])
    except ValueError as e:
        raise InputError(f"{a} vs {b}: {e}") from None
    return {"a": str(a), "b": str(b), "split": ea.get("split"), **change}
