"""PNG plots of a results document (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from models.atomic import atomic_save

MB = 1024 * 1024
_COLORS = {"torch": "#7f7f7f", "onnxruntime": "#1f77b4", "litert": "#ff7f0e", "coreml": "#2ca02c"}
_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "a16w8": "D"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # never open a window, works headless in CI
    import matplotlib.pyplot as plt

    return plt


def _ok(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["rows"] if r["status"] == "ok" and r["latency"] and r["latency"].get("p50_ms") is not None]


def latency_plot(doc: dict[str, Any], path: Path) -> Path | None:
    """p50 bars with a whisker up to p90 (p95 where the tool gives no p90, e.g. benchmark_model)."""
    rows = _ok(doc)
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    labels, p50, upper, colors = [], [], [], []
    whisker = "p90"
    for r in rows:
        lat = r["latency"]
        top = lat.get("p90_ms")
        if top is None:
            top, whisker = lat.get("p95_ms") or lat["p50_ms"], "p95"
        labels.append(f"{r['artifact']} ({r['threads'] or '-'}t)")
        p50.append(lat["p50_ms"])
        upper.append(max(0.0, top - lat["p50_ms"]))
        colors.append(_COLORS.get(r["runtime"], "#9467bd"))
    y = range(len(rows))
    ax.barh(list(y), p50, color=colors, xerr=[[0] * len(rows), upper], capsize=3)
    for yi, v in zip(y, p50):
        ax.annotate(f"{v:.2f}", (v, yi), xytext=(3, -9), textcoords="offset points", fontsize=7)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    log = max(p + u for p, u in zip(p50, upper)) > 20 * min(p50)
    if log:  # one slow row (e.g. torch eager) would flatten every other bar on a linear axis
        _log_axis(ax.xaxis, ax.set_xscale)
    ax.set_xlabel(f"latency ms (bar p50, whisker {whisker}){', log scale' if log else ''}")
    ax.set_title(f"Batch-1 latency — {doc['settings']['target']}")
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def pareto_plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Latency (p50, fewest threads) vs balanced accuracy; the frontier joins the undominated artifacts.

    Artifacts often crowd (fp32 in two runtimes at the same accuracy, int8 twins a few µs apart): each point gets a
    number placed where it overlaps no other label or point, and the legend beside the axes names the artifacts.
    """
    rows = [r for r in _ok(doc) if r.get("accuracy")]
    if not rows:
        return None
    best: dict[str, dict[str, Any]] = {}
    for r in rows:  # one point per artifact: its lowest thread count (the phone-like setting)
        cur = best.get(r["artifact"])
        if cur is None or (r["threads"] or 0) < (cur["threads"] or 0):
            best[r["artifact"]] = r
    pts = sorted(((r["latency"]["p50_ms"], r["accuracy"]["balanced_accuracy"], r) for r in best.values()),
                 key=lambda t: (t[0], -t[1]))
    frontier, top = [], -1.0
    for x, y, _ in pts:
        if y > top:
            frontier.append((x, y))
            top = y
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    handles = []
    for i, (x, y, r) in enumerate(pts, 1):
        h = ax.scatter([x], [100 * y], color=_COLORS.get(r["runtime"], "#9467bd"),
                       marker=_MARKERS.get(r.get("precision"), "o"), s=36, zorder=3,
                       label=f"{i}  {r['artifact']}: {x:.2f} ms, {100 * y:.1f} %")
        handles.append(h)
    ring = ax.scatter([f[0] for f in frontier], [100 * f[1] for f in frontier], s=160, facecolors="none",
                      edgecolors="black", zorder=2, label="Pareto frontier")
    ax.step([f[0] for f in frontier], [100 * f[1] for f in frontier], where="post", color="black", lw=1, alpha=0.5)
    log = max(p[0] for p in pts) > 5 * min(p[0] for p in pts)
    if log:  # torch eager would squeeze the exported files together on a linear axis
        _log_axis(ax.xaxis, ax.set_xscale)
    ax.set_xlabel(f"p50 latency ms (fewest threads){', log scale' if log else ''}")
    ax.set_ylabel("balanced accuracy %")
    ax.set_title("Latency vs balanced accuracy")
    ax.margins(0.12)  # room for the labels of points at the edges
    on_frontier = {(x, y) for x, y in frontier}  # the ring around a frontier point is wider than the marker
    place_labels(ax, [(x, 100 * y) for x, y, _ in pts], [str(i) for i in range(1, len(pts) + 1)],
                 marker_px=[10.0 if (x, y) in on_frontier else 4.0 for x, y, _ in pts])
    fig.legend(handles=[*handles, ring], loc="outside right upper", fontsize=8,
               title="artifact (p50, balanced acc.)", title_fontsize=8)
    _save(plt, fig, path)
    return path


# Label offsets in points around a marker, nearest first, tried at growing radius until one collides with nothing.
_OFFSETS = [(5, 4), (5, -11), (-11, 4), (-11, -11), (7, -3), (-13, -3), (-3, 7), (-3, -14)]
_RINGS = (1.0, 1.8, 2.8, 4.0)


def place_labels(ax: Any, xy: list[tuple[float, float]], texts: list[str], fontsize: float = 8,
                 marker_px: list[float] | None = None) -> list[Any]:
    """Annotate data point ``xy[i]`` with ``texts[i]`` where the label overlaps no earlier label, no marker (a box of
    half-size ``marker_px[i]`` pixels, default 4), sits nearer its own point than any other and stays inside the
    axes (a small adjustText, without the dependency); a thin leader line joins a label moved away to its point.
    Where nothing is free, the candidate with the least overlap wins.

    Call after the axes' scales and limits are final. Returns the annotations.
    """
    from matplotlib.text import Text

    fig = ax.figure
    fig.canvas.draw()  # final layout, scales and limits, and a renderer to measure text with
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    half = marker_px or [4.0] * len(xy)
    centres = [(float(px), float(py)) for px, py in ax.transData.transform(xy)]
    taken = [(px - h, py - h, px + h, py + h) for (px, py), h in zip(centres, half)]  # the markers
    artists = []
    for i, ((x, y), text) in enumerate(zip(xy, texts)):
        a = ax.annotate(text, (x, y), xytext=_OFFSETS[0], textcoords="offset points", fontsize=fontsize, zorder=4,
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 3})
        best: tuple[float, tuple[float, float], tuple[float, float, float, float]] | None = None
        for offset in [(dx * r, dy * r) for r in _RINGS for dx, dy in _OFFSETS]:
            a.xyann = offset
            a.update_positions(renderer)
            bb = Text.get_window_extent(a, renderer)  # the text alone, not the leader line
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            cost = sum(_overlap(box, t) for t in taken)
            if bb.x0 < frame.x0 or bb.x1 > frame.x1 or bb.y0 < frame.y0 or bb.y1 > frame.y1:
                cost += bb.width * bb.height
            cx, cy = (bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2
            own = math.dist((cx, cy), centres[i])
            if any(math.dist((cx, cy), c) < own - 1.0 for j, c in enumerate(centres) if j != i):
                cost += 0.5 * bb.width * bb.height  # it would read as another point's label
            if best is None or cost < best[0]:
                best = (cost, offset, box)
            if cost == 0:
                break
        a.xyann = best[1]
        taken.append(best[2])
        artists.append(a)
    return artists


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _log_axis(axis: Any, set_scale: Any) -> None:
    """Log scale with plain-number ticks at 1-2-5 steps (matplotlib's default labels minor ticks as 3×10⁻¹,
    which overprint when the range is short)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def size_memory_plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Size on disk and peak memory delta per artifact (one bar each: memory is measured once per artifact)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in doc["rows"]:
        seen.setdefault(r["artifact"], r)
    rows = list(seen.values())
    if not rows:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(rows) + 1.5), sharey=True)
    y = list(range(len(rows)))
    colors = [_COLORS.get(r["runtime"], "#9467bd") for r in rows]
    sizes = [r["size_bytes"] / MB for r in rows]
    a1.barh(y, sizes, color=colors)
    a1.set_yticks(y, [r["artifact"] for r in rows])
    a1.invert_yaxis()
    a1.set_xlabel("size on disk MB")
    mem = [(r["memory"] or {}).get("overall_peak_delta_mb") for r in rows]
    a2.barh(y, [m or 0 for m in mem], color=colors)
    # values at the bar ends (offset right of the bar, so they never sit on the axis or each other)
    for ax, values in ((a1, sizes), (a2, mem)):
        for yi, v in zip(y, values):
            ax.annotate("n/a" if v is None else f"{v:.1f}", (v or 0, yi), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.margins(x=0.12)
    a2.set_xlabel("peak RSS Δ MB (load + inference)")
    fig.suptitle("Size and peak memory")
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def reliability_plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Reliability diagrams of every artifact scored for accuracy: at T = 1 and, when any contract has a fitted
    temperature, at each artifact's own T."""
    from distill.plots import plot_reliability
    from models.calibration import Calibration

    seen: dict[str, Calibration] = {}
    for r in doc["rows"]:
        cal = (r.get("accuracy") or {}).get("calibration")
        if cal and r["artifact"] not in seen:
            seen[r["artifact"]] = Calibration.from_json(cal)
    if not seen:
        return None
    panels = [("T = 1", [(name, c.before) for name, c in seen.items()])]
    if any(c.temperature != 1.0 for c in seen.values()):
        panels.append(("at each artifact's temperature T",
                       [(f"{name}, T {c.temperature:.2f}", c.after) for name, c in seen.items()]))
    data = doc.get("data") or {}
    split = f", {data['split']} split" if data.get("split") else ""
    return plot_reliability(panels, path, f"Calibration on {data.get('images', '?')} labelled images{split}")


def _save(plt: Any, fig: Any, path: Path) -> None:
    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def make_plots(doc: dict[str, Any], out: Path) -> list[Path]:
    made = [latency_plot(doc, out / "latency.png"), pareto_plot(doc, out / "pareto.png"),
            size_memory_plot(doc, out / "size_memory.png"), reliability_plot(doc, out / "reliability.png")]
    return [p for p in made if p is not None]
