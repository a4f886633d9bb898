"""The results plots stay readable when artifacts crowd: labels never overprint, log axes get plain tick labels."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.plots import latency_plot, make_plots, pareto_plot, place_labels


def _row(artifact: str, runtime: str, precision: str, p50: float, bacc: float, threads: int = 1) -> dict:
    return {"artifact": artifact, "runtime": runtime, "precision": precision, "threads": threads, "status": "ok",
            "size_bytes": 2_000_000, "latency": {"p50_ms": p50, "p90_ms": p50 * 1.2},
            "accuracy": {"balanced_accuracy": bacc}, "memory": {"overall_peak_delta_mb": 10.0}}


def _crowded_doc() -> dict:
    """Eight exported files within 0.1 ms and a point of accuracy of each other, and torch eager far away."""
    rows = [_row("pytorch_fp32", "torch", "fp32", 9.0, 0.40)]
    for i, (rt, prec) in enumerate(itertools.product(("onnxruntime", "litert"), ("fp32", "fp16", "int8", "int8b"))):
        ext = "onnx" if rt == "onnxruntime" else "tflite"
        rows.append(_row(f"model_{prec}.{ext}", rt, prec.rstrip("b"), 0.40 + 0.01 * i, 0.40 - 0.002 * (i % 3)))
    return {"settings": {"target": "host"}, "rows": rows}


def _boxes(artists, renderer) -> list[tuple[float, float, float, float]]:
    from matplotlib.text import Text

    out = []
    for a in artists:
        bb = Text.get_window_extent(a, renderer)
        out.append((bb.x0, bb.y0, bb.x1, bb.y1))
    return out


def _overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


@pytest.mark.parametrize("n", [2, 6, 9])
def test_labels_of_coincident_points_do_not_overlap(n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xy = [(1.0 + 0.001 * i, 50.0) for i in range(n)] + [(3.0, 20.0)]  # n points on one spot, one apart
    ax.scatter(*zip(*xy))
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 100)
    texts = [f"artifact_{i}" for i in range(len(xy))]
    artists = place_labels(ax, xy, texts)
    boxes = _boxes(artists, fig.canvas.get_renderer())
    assert [a.get_text() for a in artists] == texts
    assert not [(i, j) for i, j in itertools.combinations(range(len(boxes)), 2) if _overlaps(boxes[i], boxes[j])]
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b[0] and b[2] <= frame.x1 and frame.y0 <= b[1] and b[3] <= frame.y1 for b in boxes)
    plt.close(fig)


def test_crowded_results_make_all_three_plots(tmp_path) -> None:
    made = make_plots(_crowded_doc(), tmp_path)
    assert sorted(p.name for p in made) == ["latency.png", "pareto.png", "size_memory.png"]
    assert all(p.stat().st_size > 10_000 for p in made)


def test_log_latency_axis_labels_are_plain_numbers(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    seen = {}
    real_close = plt.close

    def keep_labels(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            ax = fig.axes[0]
            seen["scale"] = ax.get_xscale()
            seen["major"] = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            seen["minor"] = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
        return real_close(fig)

    monkeypatch.setattr(plt, "close", keep_labels)
    assert latency_plot(_crowded_doc(), tmp_path / "latency.png") is not None
    assert seen["scale"] == "log" and not seen["minor"]
    assert seen["major"] and all("10^" not in t and "times" not in t for t in seen["major"]), seen["major"]
    assert pareto_plot(_crowded_doc(), tmp_path / "pareto.png") is not None


def _scored_doc(temperature: float) -> dict:
    """Two artifacts scored by ``benchmarks.accuracy.metrics`` on an overconfident synthetic model."""
    from pathlib import Path

    import numpy as np

    from benchmarks.accuracy import EvalSet, metrics
    from models.preprocessing import softmax

    rng = np.random.default_rng(0)
    labels = ("a", "b", "c")
    logits = rng.normal(0.0, 4.0, (300, 3))
    y = np.minimum((rng.random(300)[:, None] > np.cumsum(softmax(logits / 3.0), axis=1)).sum(1), 2)
    evalset = EvalSet(Path("."), tuple(Path(f"{i}.jpg") for i in range(300)), tuple(labels[i] for i in y), None)
    rows = []
    for name, noise in (("model_fp32.onnx", 0.0), ("model_int8.tflite", 0.3)):
        probs = softmax(logits + rng.normal(0.0, noise, logits.shape))
        rows.append({**_row(name, "onnxruntime", "fp32", 1.0, 0.5),
                     "accuracy": metrics(probs, evalset, labels, name, temperature=temperature)})
    return {"settings": {"target": "host"}, "data": {"images": 300, "split": None}, "rows": rows}


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_reliability_plot_and_the_calibration_behind_it(tmp_path, monkeypatch, temperature: float) -> None:
    import distill.plots
    from benchmarks.plots import reliability_plot

    doc = _scored_doc(temperature)
    for r in doc["rows"]:
        cal = r["accuracy"]["calibration"]
        assert cal["temperature"] == temperature and len(cal["reliability_before"]["count"]) == cal["bins"] == 15
        assert (cal["ece_after"] < 0.5 * cal["ece_before"]) if temperature != 1.0 else (
            cal["ece_after"] == cal["ece_before"])
    panels = []
    real = distill.plots.plot_reliability

    def recording(p, path, title):
        panels.append(p)
        return real(p, path, title)

    monkeypatch.setattr(distill.plots, "plot_reliability", recording)
    path = reliability_plot(doc, tmp_path / "reliability.png")
    assert path.stat().st_size > 10_000
    # a second panel at the artifacts' own temperature only when one was fitted; a curve per artifact in each
    assert [len(curves) for _, curves in panels[0]] == ([2, 2] if temperature != 1.0 else [2])
