"""PNG plots of a results document (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.atomic import atomic_save

MB = 1024 * 1024
_COLORS = {"torch": "#7f7f7f", "onnxruntime": "#1f77b4", "litert": "#ff7f0e", "coreml": "#2ca02c"}


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
        ax.set_xscale("log")
    ax.set_xlabel(f"latency ms (bar p50, whisker {whisker}){', log scale' if log else ''}")
    ax.set_title(f"Batch-1 latency — {doc['settings']['target']}")
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def pareto_plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Latency (p50, fewest threads) vs balanced accuracy; the frontier joins the undominated artifacts."""
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
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (x, y, r) in enumerate(pts):
        ax.scatter([x], [100 * y], color=_COLORS.get(r["runtime"], "#9467bd"), zorder=3)
        # alternate label offsets: artifacts with equal accuracy (fp32 in two runtimes) would overprint
        ax.annotate(r["artifact"], (x, 100 * y), textcoords="offset points", xytext=(5, 5 if i % 2 else -11),
                    fontsize=8)
    ax.scatter([f[0] for f in frontier], [100 * f[1] for f in frontier], s=160, facecolors="none",
               edgecolors="black", zorder=2, label="Pareto frontier")
    ax.step([f[0] for f in frontier], [100 * f[1] for f in frontier], where="post", color="black", lw=1, alpha=0.5)
    ax.set_xlabel("p50 latency ms (fewest threads)")
    ax.set_ylabel("balanced accuracy %")
    ax.set_title("Latency vs balanced accuracy")
    ax.margins(0.15)  # room for the labels of points at the edges
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)
    return path


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
    a1.barh(y, [r["size_bytes"] / MB for r in rows], color=colors)
    a1.set_yticks(y, [r["artifact"] for r in rows])
    a1.invert_yaxis()
    a1.set_xlabel("size on disk MB")
    mem = [(r["memory"] or {}).get("overall_peak_delta_mb") for r in rows]
    a2.barh(y, [m or 0 for m in mem], color=colors)
    for yi, m in zip(y, mem):
        if m is None:
            a2.annotate("n/a", (0, yi), va="center", fontsize=8)
    a2.set_xlabel("peak RSS Δ MB (load + inference)")
    fig.suptitle("Size and peak memory")
    fig.tight_layout()
    _save(plt, fig, path)
    return path


def _save(plt: Any, fig: Any, path: Path) -> None:
    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def make_plots(doc: dict[str, Any], out: Path) -> list[Path]:
    made = [latency_plot(doc, out / "latency.png"), pareto_plot(doc, out / "pareto.png"),
            size_memory_plot(doc, out / "size_memory.png")]
    return [p for p in made if p is not None]
