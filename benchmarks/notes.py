"""One-line findings drawn from the rows of one run, so the report explains its latency instead of leaving the
reader to guess:

- ``int8_notes``: an int8 artifact that is not faster than its fp32 twin on this host, with the reason found
  (the CPU's 8-bit dot-product instructions, from ``models.host``);
- ``reference_ratios``: each of the user's artifacts against each ``--reference`` file of the same runtime and
  precision family, at the same thread count.

Both return JSON-ready dicts whose ``text`` is the line the markdown report prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.host import INT8_DOT

# Why int8 can lose on a CPU that has the instructions: said once, short, and hedged, since it is not measured.
WITH_DOT = ("despite 8-bit dot-product instructions on this CPU ({isa}): quantize/dequantize steps, memory-bound ops "
            "(a large share of a small model) or ops without int8 kernels likely outweigh the faster 8-bit "
            "arithmetic")


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and (r["latency"] or {}).get("p50_ms") is not None]


def _p50(row: dict[str, Any]) -> float:
    return row["latency"]["p50_ms"]


def _threads(n: int | None) -> str:
    return "no thread setting" if n is None else f"{n} thread{'s' if n != 1 else ''}"


def family(precision: str) -> str:
    """int8 and int8_fio (float I/O around int8) race in the same class."""
    return "int8" if precision.startswith("int8") else precision


def int8_reason(machine: dict[str, Any]) -> str:
    """Why int8 may not beat fp32 on the machine a results doc was measured on."""
    if machine.get("int8_dot_product"):
        return WITH_DOT.format(isa=", ".join(f for f in machine.get("isa") or [] if f in INT8_DOT))
    return machine.get("int8_note") or "the CPU's instruction sets were not recorded"


def _twin(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fp32 file of the same runtime and target at the same thread count, from the same directory when
    there are several (two export dirs in one run); None when it is not unambiguous."""
    cands = [r for r in rows if r["precision"] == "fp32" and not r.get("reference")
             and (r["runtime"], r["target"], r["threads"]) == (row["runtime"], row["target"], row["threads"])]
    near = [r for r in cands if Path(r["path"]).parent == Path(row["path"]).parent]
    pick = near or cands
    return pick[0] if len(pick) == 1 else None


def int8_notes(rows: list[dict[str, Any]], machine: dict[str, Any], target_kind: str) -> list[dict[str, Any]]:
    """A note per int8 row (host runs only) whose p50 is not lower than its fp32 twin's."""
    if target_kind == "android":  # the phone's CPU ran these, not the host whose ISA is recorded
        return []
    ok = _ok(rows)
    notes = []
    for r in ok:
        if family(r["precision"]) != "int8" or r.get("reference"):
            continue
        twin = _twin(r, ok)
        if twin is None or _p50(r) < _p50(twin):
            continue
        reason = int8_reason(machine)
        text = (f"{r['artifact']} ({_threads(r['threads'])}) is not faster than {twin['artifact']} "
                f"({_p50(r):.2f} ms vs {_p50(twin):.2f} ms p50)")
        notes.append({"kind": "int8_not_faster", "artifact": r["artifact"], "twin": twin["artifact"],
                      "runtime": r["runtime"], "threads": r["threads"], "p50_ms": _p50(r), "twin_p50_ms": _p50(twin),
                      "reason": reason, "text": f"{text}{' ' if reason.startswith('despite') else ': '}{reason}"})
    return notes


def _race_key(row: dict[str, Any]) -> tuple[str, int | None, str]:
    return row["runtime"], row["threads"], family(row["precision"])


def _same_race(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["precision"] != "unknown" and _race_key(a) == _race_key(b)


def reference_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50 of each user artifact / p50 of each --reference file it races (same runtime, precision family and
    thread count). In a run of references only, each is raced against the first one given."""
    ok = _ok(rows)
    refs = [r for r in ok if r.get("reference")]
    mine = [r for r in ok if not r.get("reference")]
    if not mine and refs:
        first = refs[0]["artifact"]
        mine = [r for r in refs if r["artifact"] != first]
        refs = [r for r in refs if r["artifact"] == first]
    out = []
    for ref in refs:
        for r in mine:
            if not _same_race(r, ref):
                continue
            ratio = _p50(r) / _p50(ref)
            out.append({"artifact": r["artifact"], "reference": ref["artifact"], "runtime": r["runtime"],
                        "precision": family(r["precision"]), "threads": r["threads"], "p50_ratio": ratio,
                        "text": f"{r['artifact']} / {ref['artifact']} ({_threads(r['threads'])}): {ratio:.2f}x p50 "
                                f"latency ({_p50(r):.2f} ms vs {_p50(ref):.2f} ms)"})
    return out
