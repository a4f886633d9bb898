"""The facts every exported file carries about its model, whatever its format.

Labels, normalisation, the temperature and the model card travel inside each artifact so that a tool other than this
project's own code can use it without ``labels.txt`` and ``preprocessing.json`` beside it: as string pairs (ONNX
``metadata_props``, CoreML ``user_defined_metadata``) and through the name / description / version / author /
licence fields each format has (TFLite model metadata, CoreML). One source, so the formats cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json

from models.checkpoint import ModelCard
from models.preprocessing import Preprocessing

AUTHOR = "ssdkd-export (SSD-KD skin-lesion distillation)"
INTENDED_USE = "Research use only: not a medical device, and it gives no diagnosis."
NO_LICENCE = "unknown: the model card records no licence"
# (card.metrics key, label, format): the figures a reader of the description needs, in this order
CARD_METRICS = (("accuracy", "accuracy", "{:.1%}"), ("balanced_accuracy", "balanced accuracy", "{:.1%}"),
                ("macro_auc", "macro one-vs-rest AUC", "{:.3f}"))


def temperature(pre: Preprocessing) -> float:
    """The contract's softmax temperature (1.0: uncalibrated)."""
    return float(pre.temperature)


def name(card: ModelCard) -> str:
    return f"ssdkd {card.arch} skin-lesion classifier"


def version(card: ModelCard) -> str:
    """Which training produced the weights (the card has no date or digest to say more)."""
    t = card.training
    return f"{t.get('stage', 'model')} {t.get('method', '')}".strip() + f", model card v{card.card_version}"


def licence(card: ModelCard) -> str:
    return str(card.data.get("licence") or NO_LICENCE)


def description(card: ModelCard, pre: Preprocessing) -> str:
    """The model card's key facts in a few lines: architecture, training data, metrics, temperature, intended use."""
    width = f" (width {card.width:g})" if card.width is not None else ""
    d, m = card.data, card.metrics
    lines = [f"{card.arch}{width} classifying dermoscopic images into {len(pre.labels)} classes: "
             f"{', '.join(pre.labels)}.",
             f"Input: RGB {pre.input_size}x{pre.input_size}, centre square crop then resize, "
             f"(v/255 - mean)/std with mean {list(pre.mean)}, std {list(pre.std)}."]
    if d:
        lines.append(f"Training data: {d.get('layout', 'unknown')} layout, {d.get('train_images', '?')} train / "
                     f"{d.get('val_images', '?')} val images, lesion-grouped split (seed {d.get('split_seed', '?')}); "
                     f"{card.training.get('stage', 'model')} trained with {card.training.get('method', '?')}.")
    figures = [f"{label} {fmt.format(m[key])}" for key, label, fmt in CARD_METRICS if m.get(key) is not None]
    if figures:
        lines.append(f"Metrics on the {m.get('split', 'val')} split (PyTorch fp32): {', '.join(figures)}.")
    lines.append(f"Temperature T = {temperature(pre):g}: calibrated probabilities are softmax(logits / T).")
    lines.append(f"Licence: {licence(card)}")
    lines.append(INTENDED_USE)
    return "\n".join(lines)


def string_metadata(card: ModelCard, pre: Preprocessing) -> dict[str, str]:
    """String -> string pairs for ONNX ``metadata_props`` and CoreML ``user_defined_metadata``; ``pre`` is the
    artifact's contract (it is embedded whole, without a file name: the file is the model itself)."""
    return {
        "labels": json.dumps(list(pre.labels)),
        "mean": json.dumps(list(pre.mean)),
        "std": json.dumps(list(pre.std)),
        "input_size": str(pre.input_size),
        "layout": pre.layout,
        "output_kind": pre.output_kind,
        "temperature": repr(temperature(pre)),
        "preprocessing": json.dumps(dataclasses.replace(pre, model_file=None).to_json()),
        "model_card": json.dumps(card.to_json()),
        "description": description(card, pre),
        "author": AUTHOR,
        "license": licence(card),
        "intended_use": INTENDED_USE,
        "producer": "ssdkd-export",
    }
