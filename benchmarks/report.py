"""The results document: its rows (made by host and phone runs alike), the document assembled from them,
results.json / results.csv / results.md and the plots written from it, and two results files compared row by row."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

from benchmarks import notes, schema
from benchmarks.artifacts import Artifact
from benchmarks.profiles import Profile
from models.atomic import atomic_write_json, atomic_write_text, read_json
from models.errors import InputError

MB = 1024 * 1024

CSV_LATENCY = ("init_ms", "first_ms", "warmup_mean_ms", "n", "mean_ms", "std_ms", "min_ms", "max_ms", "p5_ms",
               "p50_ms", "p90_ms", "p95_ms", "p99_ms")
CSV_MEMORY = ("threads", "load_peak_delta_mb", "overall_peak_delta_mb", "load_rss_delta_mb", "process_peak_mb")
CSV_ACCURACY = ("n", "accuracy", "balanced_accuracy", "agreement_with_torch", "softmax_mae_vs_torch")
CSV_ESTIMATE = ("factor", "p50_ms", "p90_ms", "mean_ms")
CSV_CALIBRATION = ("temperature", "ece_before", "ece_after")


def new_row(a: Artifact, threads: int | None) -> dict[str, Any]:
    """A row of ``a`` at ``threads``, status ok and no figures yet."""
    return {"artifact": a.name, "path": str(a.path), "runtime": a.runtime, "precision": a.precision,
            "target": a.target, "threads": threads, "status": "ok", "size_bytes": a.size_bytes,
            "runtime_settings": None, "latency": None, "p50_ratio_to_torch": None, "memory": None,
            "accuracy": None, "estimate": None, "reference": a.contractless}


def fail(row: dict[str, Any], message: str) -> None:
    """Mark a row failed (keeping the first failure) and drop its figures: none from a failed run."""
    if not row["status"].startswith("failed"):
        row["status"] = f"failed: {message}"
    row["latency"] = None


def broken_rows(broken: list[Artifact], threads: list[int]) -> list[dict[str, Any]]:
    """A failed row per thread count for each artifact that cannot be run, its problem as the reason."""
    rows = []
    for a in broken:
        for t in threads:
            row = new_row(a, t)
            fail(row, a.problem or "cannot be run")
            rows.append(row)
    return rows


def rows_of(rows: list[dict[str, Any]], a: Artifact) -> list[dict[str, Any]]:
    """Every row of artifact ``a`` (one per thread count)."""
    return [r for r in rows if r["path"] == str(a.path)]


def document(rows: list[dict[str, Any]], *, machine: dict[str, Any], runtime_versions: dict[str, Any],
             settings: dict[str, Any], model: dict[str, Any] | None, data: dict[str, Any] | None,
             command: list[str], profile: Profile | None) -> dict[str, Any]:
    """The results document of one run: its blocks, the figures derived from its rows (ratios to PyTorch, the
    profile's estimates) and its findings; checked against the schema."""
    _add_ratios(rows)
    if profile is not None and profile.slowdown is not None:
        _add_estimates(rows, profile)
    doc = {
        "schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tool": {"name": "ssdkd-bench", "command": command},
        "machine": machine, "runtime_versions": runtime_versions, "settings": settings, "model": model, "data": data,
        "rows": rows,
        "failures": [f"{r['runtime']}: {r['artifact']} ({r['threads'] or '-'} threads): {r['status'][8:]}"
                     for r in rows if r["status"].startswith("failed")],
        "notes": notes.int8_notes(rows, machine, settings["target_kind"]),
        "reference_ratios": notes.reference_ratios(rows),
    }
    schema.check(doc)
    return doc


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    torch_p50 = {r["threads"]: r["latency"]["p50_ms"] for r in rows
                 if r["runtime"] == "torch" and r["status"] == "ok" and r["latency"]}
    for r in rows:
        lat = r["latency"]
        base = torch_p50.get(r["threads"])
        # A --reference file is another network: its ratio to our PyTorch model would compare unlike work.
        if r["status"] == "ok" and lat and lat.get("p50_ms") is not None and base and not r["reference"]:
            r["p50_ratio_to_torch"] = lat["p50_ms"] / base


def _add_estimates(rows: list[dict[str, Any]], profile: Profile) -> None:
    assert profile.slowdown is not None
    f = profile.slowdown.factor
    for r in rows:
        lat = r["latency"]
        if r["status"] != "ok" or not lat:
            continue
        r["estimate"] = {"label": f"estimate (not measured): host latency x {f:g} from profile {profile.name!r}",
                         "factor": f, "basis": profile.slowdown.basis,
                         **{k: (lat[k] * f if lat.get(k) is not None else None)
                            for k in ("p50_ms", "p90_ms", "mean_ms")}}


def row_key(row: dict[str, Any]) -> tuple[str, str, Any]:
    return row["artifact"], row["runtime"], row["threads"]


def _get(d: dict[str, Any] | None, key: str) -> Any:
    return None if not isinstance(d, dict) else d.get(key)


def csv_text(doc: dict[str, Any]) -> str:
    """One line per row, nested blocks flattened with prefixes (latency_, memory_, accuracy_, est_)."""
    header = (["artifact", "runtime", "precision", "target", "threads", "status", "size_bytes", "path"]
              + [f"latency_{k}" for k in CSV_LATENCY] + ["p50_ratio_to_torch"]
              + [f"memory_{k}" for k in CSV_MEMORY] + [f"accuracy_{k}" for k in CSV_ACCURACY]
              + [f"calibration_{k}" for k in CSV_CALIBRATION] + [f"est_{k}" for k in CSV_ESTIMATE] + ["reference"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in doc["rows"]:
        w.writerow([r["artifact"], r["runtime"], r["precision"], r["target"], r["threads"], r["status"],
                    r["size_bytes"], r["path"]]
                   + [_get(r["latency"], k) for k in CSV_LATENCY] + [r["p50_ratio_to_torch"]]
                   + [_get(r["memory"], k) for k in CSV_MEMORY] + [_get(r["accuracy"], k) for k in CSV_ACCURACY]
                   + [_get(_get(r["accuracy"], "calibration"), k) for k in CSV_CALIBRATION]
                   + [_get(r["estimate"], k) for k in CSV_ESTIMATE] + [bool(r.get("reference"))])
    return buf.getvalue()


def _f(v: Any, fmt: str = ".2f") -> str:
    return "—" if v is None else format(v, fmt)


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def markdown(doc: dict[str, Any]) -> str:
    """A table a person can paste into a README, with the context needed to read it."""
    m, s = doc["machine"], doc["settings"]
    lines = ["# ssdkd-bench results", ""]
    cpu = f"{m.get('cpu_model') or 'unknown CPU'}, {m['logical_cpus']} logical CPUs{_isa(m)}"
    lines.append(f"- machine: {cpu}; process affinity {m['affinity']}; {m['platform']}")
    if s["target_kind"] == "profile":
        p = s["profile"]
        lines.append(f"- target: profile `{p['name']}` — {p['description']}. **Host emulation, not phone latency**: "
                     f"pinned to CPU(s) {s.get('pinned_cpus')} with {p['threads']} runtime thread(s)")
    elif s["target_kind"] == "android":
        dev = m.get("android_device") or {}
        lines.append(f"- target: Android device {dev.get('model')} ({dev.get('soc')}, Android {dev.get('android')}, "
                     f"serial {dev.get('serial')}) via benchmark_model; accuracy computed on the host with LiteRT")
    else:
        lines.append("- target: host (this machine as it is)")
    lines.append(f"- timing: batch 1, ≥ {s['runs']} runs and ≥ {s['min_seconds']:g} s per row after {s['warmup']} "
                 f"warm-up runs; {s['interleave']}; input {s['input']}")
    la0, la1 = m["load_average_start"], m["load_average_end"]
    lines.append(f"- load average (1/5/15 min): start {' '.join(f'{x:.2f}' for x in la0)}, "
                 f"end {' '.join(f'{x:.2f}' for x in la1)}")
    rv = doc["runtime_versions"]
    lines.append("- runtimes: " + ", ".join(f"{k} {v}" for k, v in rv.items() if v))
    if doc.get("model"):
        mo = doc["model"]
        width = f" ×{mo['width']:g}" if mo.get("width") else ""
        lines.append(f"- network: {mo['arch']}{width}, {mo['input_size']} px, {mo['params'] / 1e6:.2f} M parameters, "
                     f"{mo['macs'] / 1e6:.1f} M MACs ({mo['macs_counted']})")
    if doc.get("data"):
        d = doc["data"]
        split = f", {d['split']} split" if d.get("split") else ""
        lines.append(f"- accuracy: {d['images']} labelled images from `{d['root']}`{split}")
    for w in s.get("warnings", []):
        lines.append(f"- warning: {w}")
    lines += ["", "| artifact | runtime | precision | threads | status | size MB | init ms | first ms | p50 ms | "
              "p90 ms | p99 ms | mean ± std ms | p50 / torch | load Δ MB | peak Δ MB | acc % | bal. acc % | "
              "agree % | ECE T=1 → T |", "|" + "---|" * 19]
    for r in doc["rows"]:
        lat, mem, acc = r["latency"] or {}, r["memory"] or {}, r["accuracy"] or {}
        mean = (f"{lat['mean_ms']:.2f} ± {lat['std_ms']:.2f}" if lat.get("mean_ms") is not None
                and lat.get("std_ms") is not None else "—")
        status = r["status"].replace("|", "/")
        name = f"{r['artifact']} (reference)" if r.get("reference") else r["artifact"]
        lines.append(
            f"| {name} | {r['runtime']} | {r['precision']} | {r['threads'] if r['threads'] else '—'} | "
            f"{status} | {r['size_bytes'] / MB:.2f} | {_f(lat.get('init_ms'), '.1f')} | {_f(lat.get('first_ms'))} | "
            f"{_f(lat.get('p50_ms'))} | {_f(lat.get('p90_ms'))} | {_f(lat.get('p99_ms'))} | {mean} | "
            f"{_f(r['p50_ratio_to_torch'])} | {_f(mem.get('load_peak_delta_mb'), '.1f')} | "
            f"{_f(mem.get('overall_peak_delta_mb'), '.1f')} | {_pct(acc.get('accuracy'))} | "
            f"{_pct(acc.get('balanced_accuracy'))} | {_pct(acc.get('agreement_with_torch'))} | "
            f"{_calibration(acc.get('calibration'))} |")
    est = [r for r in doc["rows"] if r.get("estimate")]
    if est:
        e0 = est[0]["estimate"]
        lines += ["", f"**Estimates, not measurements** — host latency × {e0['factor']:g} ({e0['basis']}):", "",
                  "| artifact | threads | est. p50 ms | est. p90 ms |", "|---|---|---|---|"]
        lines += [f"| {r['artifact']} | {r['threads']} | {_f(r['estimate']['p50_ms'])} | "
                  f"{_f(r['estimate']['p90_ms'])} |" for r in est]
    lines += _findings(doc)
    lines += ["", "p50 / torch: p50 latency divided by PyTorch eager fp32's at the same thread count (< 1 is faster). "
              "Memory: peak-RSS deltas in a fresh process per artifact, from after the runtime import to after "
              "loading (load Δ) and after loading + inference (peak Δ), measured at "
              f"{_mem_threads(doc)} thread(s). agree: top-1 agreement with PyTorch fp32. ECE: expected calibration "
              "error (15 bins of top-1 probability) at T = 1 and at the temperature T in the artifact's "
              "preprocessing.json (the probabilities the app shows; argmax and accuracy are the same at any T); "
              "reliability diagram: reliability.png."
              + (" (reference): a --reference file without a preprocessing contract, fed random data of its own "
                 "input shape and dtype: latency and memory only." if any(r.get("reference") for r in doc["rows"])
                 else "")]
    return "\n".join(lines) + "\n"


def _calibration(cal: dict[str, Any] | None) -> str:
    if not cal:
        return "—"
    return f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f} (T {cal['temperature']:.2f})"


def _isa(machine: dict[str, Any]) -> str:
    """The CPU features that decide int8 speed (absent from results written before they were recorded)."""
    if machine.get("isa") is None:
        return ""
    isa = ", ".join(machine["isa"]) or "none of AVX2/AVX-512/VNNI/AMX (x86) or dotprod/i8mm (ARM)"
    return f"; ISA {isa} (8-bit dot product: {'yes' if machine.get('int8_dot_product') else 'no'})"


def _findings(doc: dict[str, Any]) -> list[str]:
    """The run's one-line notes: int8 not faster than fp32 here (and why), ratios to --reference files."""
    lines = []
    if doc.get("notes"):
        lines += ["", "**int8 vs fp32 on this host:**", ""] + [f"- {n['text']}" for n in doc["notes"]]
    if doc.get("reference_ratios"):
        lines += ["", "**Against --reference files** (p50 latency ratio at the same thread count; < 1: faster than "
                  "the reference):", ""] + [f"- {r['text']}" for r in doc["reference_ratios"]]
    return lines


def _mem_threads(doc: dict[str, Any]) -> str:
    ts = sorted({r["memory"].get("threads") for r in doc["rows"] if r.get("memory") and r["memory"].get("threads")})
    return ", ".join(map(str, ts)) or "—"


def write_all(doc: dict[str, Any], out: Path, *, plots: bool = True) -> dict[str, Path]:
    """results.{json,csv,md} and (``plots``) the PNGs into ``out``; the files by kind (json, csv, md, plot names)."""
    schema.check(doc)
    files = {"json": atomic_write_json(out / "results.json", doc),
             "csv": atomic_write_text(out / "results.csv", csv_text(doc)),
             "md": atomic_write_text(out / "results.md", markdown(doc))}
    if plots:
        from benchmarks.plots import make_plots  # matplotlib: imported only when plots are drawn

        files.update({p.stem: p for p in make_plots(doc, out)})
    return files


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    doc = read_json(path, "results file")
    if not isinstance(doc, dict) or doc.get("schema") != schema.SCHEMA_NAME:
        raise InputError(f"{path}: not an ssdkd-bench results.json")
    if doc.get("schema_version") != schema.SCHEMA_VERSION:
        raise InputError(f"{path}: results schema v{doc.get('schema_version')} cannot be compared with "
                         f"v{schema.SCHEMA_VERSION}")
    return doc


def _change(old: Any, new: Any, fmt: str = ".2f", rel: bool = True) -> str:
    if old is None and new is None:
        return "—"
    if old is None or new is None:
        return f"{_f(old, fmt)} → {_f(new, fmt)}"
    if rel and old:
        return f"{old:{fmt}} → {new:{fmt}} ({100 * (new - old) / old:+.1f}%)"
    return f"{old:{fmt}} → {new:{fmt}} ({new - old:+{fmt}})"


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A markdown table of the change per row (matched by artifact, runtime, threads)."""
    lines = ["# ssdkd-bench comparison", ""]
    om, nm = old["machine"], new["machine"]
    if om.get("cpu_model") != nm.get("cpu_model") or old["settings"]["target"] != new["settings"]["target"]:
        lines.append(f"- warning: different machine or target ({om.get('cpu_model')} / {old['settings']['target']} "
                     f"vs {nm.get('cpu_model')} / {new['settings']['target']}): latency changes are not like for like")
    net = [{k: (d.get("model") or {}).get(k) for k in ("arch", "width", "input_size", "params")} for d in (old, new)]
    if net[0] != net[1]:
        lines.append(f"- warning: different networks ({net[0]} vs {net[1]}): rows compare different models")
    lines.append(f"- old: {old['created_utc']}, new: {new['created_utc']}")
    lines += ["", "| artifact | runtime | threads | p50 ms | p90 ms | peak Δ MB | bal. acc | status |",
              "|---|---|---|---|---|---|---|---|"]
    old_rows = {row_key(r): r for r in old["rows"]}
    seen = set()
    for r in new["rows"]:
        k = row_key(r)
        seen.add(k)
        o = old_rows.get(k)
        if o is None:
            lines.append(f"| {r['artifact']} | {r['runtime']} | {r['threads']} | new row | | | | {r['status']} |")
            continue
        status = r["status"] if r["status"] == o["status"] else f"{o['status']} → {r['status']}"
        cells = [_change(_get(o["latency"], "p50_ms"), _get(r["latency"], "p50_ms")),
                 _change(_get(o["latency"], "p90_ms"), _get(r["latency"], "p90_ms")),
                 _change(_get(o["memory"], "overall_peak_delta_mb"), _get(r["memory"], "overall_peak_delta_mb"), ".1f"),
                 _change(_get(o["accuracy"], "balanced_accuracy"), _get(r["accuracy"], "balanced_accuracy"), ".3f",
                         rel=False),
                 status.replace("|", "/")]
        lines.append(f"| {r['artifact']} | {r['runtime']} | {r['threads']} | " + " | ".join(cells) + " |")
    for k, o in old_rows.items():
        if k not in seen:
            lines.append(f"| {o['artifact']} | {o['runtime']} | {o['threads']} | removed | | | | {o['status']} |")
    return "\n".join(lines) + "\n"
