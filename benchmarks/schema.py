"""The versioned ``results.json`` schema and a small validator (no jsonschema dependency).

Bump ``SCHEMA_VERSION`` whenever a field changes meaning or disappears; adding optional fields is
compatible. ``--compare`` refuses files of another major version.
"""

from __future__ import annotations

from typing import Any

SCHEMA_NAME = "ssdkd-bench-results"
SCHEMA_VERSION = 1

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_DICT = (dict, type(None))
OPT_LIST = (list, type(None))

TOP = {"schema": str, "schema_version": int, "created_utc": str, "tool": dict, "machine": dict,
       "runtime_versions": dict, "settings": dict, "model": OPT_DICT, "data": OPT_DICT, "rows": list,
       "failures": list}
MACHINE = {"platform": str, "cpu_model": OPT_STR, "logical_cpus": int, "affinity": list, "memory_total_mb": OPT_NUM,
           "load_average_start": list, "load_average_end": list, "android_device": OPT_DICT}
SETTINGS = {"target": str, "target_kind": str, "profile": OPT_DICT, "threads": list, "runs": int,
            "min_seconds": NUM, "warmup": int, "max_seconds": OPT_NUM, "interleave": str, "runtimes": list,
            "input": str, "memory": bool, "warnings": list}
ROW = {"artifact": str, "path": str, "runtime": str, "precision": str, "target": str, "threads": (int, type(None)),
       "status": str, "size_bytes": int, "runtime_settings": OPT_DICT, "latency": OPT_DICT,
       "p50_ratio_to_torch": OPT_NUM, "memory": OPT_DICT, "accuracy": OPT_DICT, "estimate": OPT_DICT}
LATENCY = {"init_ms": OPT_NUM, "first_ms": OPT_NUM, "warmup_mean_ms": OPT_NUM, "n": int, "mean_ms": OPT_NUM,
           "std_ms": OPT_NUM, "min_ms": OPT_NUM, "max_ms": OPT_NUM, "p5_ms": OPT_NUM, "p50_ms": OPT_NUM,
           "p90_ms": OPT_NUM, "p95_ms": OPT_NUM, "p99_ms": OPT_NUM}
ACCURACY = {"n": int, "accuracy": NUM, "balanced_accuracy": NUM, "per_class_recall": dict,
            "agreement_with_torch": OPT_NUM, "softmax_mae_vs_torch": OPT_NUM}
ESTIMATE = {"label": str, "factor": NUM, "basis": str, "p50_ms": OPT_NUM, "p90_ms": OPT_NUM, "mean_ms": OPT_NUM}
# Optional (added in v1 without a bump; older files lack them): checked only when present.
TOP_OPTIONAL = {"notes": list, "reference_ratios": list}
MACHINE_OPTIONAL = {"isa": list, "int8_dot_product": bool, "int8_note": str}
ROW_OPTIONAL = {"reference": bool}
NOTE = {"kind": str, "artifact": str, "twin": str, "runtime": str, "threads": (int, type(None)), "p50_ms": NUM,
        "twin_p50_ms": NUM, "reason": str, "text": str}
REFERENCE_RATIO = {"artifact": str, "reference": str, "runtime": str, "precision": str, "threads": (int, type(None)),
                   "p50_ratio": NUM, "text": str}
STATUSES = ("ok", "failed", "unsupported", "skipped")


def _check(obj: Any, spec: dict[str, Any], where: str, problems: list[str], optional: bool = False) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return
    for key, types in spec.items():
        if key not in obj:
            if not optional:
                problems.append(f"{where}.{key}: missing")
        elif isinstance(obj[key], bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            problems.append(f"{where}.{key}: boolean where a number/string is expected")
        elif not isinstance(obj[key], types):
            problems.append(f"{where}.{key}: {type(obj[key]).__name__} is not {types}")


def validate(doc: Any) -> list[str]:
    """Every problem found (empty list: valid). Also checks the rigor rules: an ok row carries figures
    from at least the requested number of runs, a non-ok row carries no latency."""
    problems: list[str] = []
    _check(doc, TOP, "results", problems)
    if problems:
        return problems
    if doc["schema"] != SCHEMA_NAME or doc["schema_version"] != SCHEMA_VERSION:
        problems.append(f"results: schema {doc['schema']!r} v{doc['schema_version']} is not "
                        f"{SCHEMA_NAME!r} v{SCHEMA_VERSION}")
    _check(doc, TOP_OPTIONAL, "results", problems, optional=True)
    _check(doc["machine"], MACHINE, "machine", problems)
    _check(doc["machine"], MACHINE_OPTIONAL, "machine", problems, optional=True)
    _check(doc["settings"], SETTINGS, "settings", problems)
    _check_list(doc.get("notes"), NOTE, "notes", problems)
    _check_list(doc.get("reference_ratios"), REFERENCE_RATIO, "reference_ratios", problems)
    runs = doc["settings"].get("runs", 0)
    for i, row in enumerate(doc["rows"]):
        where = f"rows[{i}]"
        _check(row, ROW, where, problems)
        _check(row, ROW_OPTIONAL, where, problems, optional=True)
        if not isinstance(row, dict) or "status" not in row:
            continue
        kind = str(row["status"]).split(":", 1)[0]
        if kind not in STATUSES:
            problems.append(f"{where}.status: {row['status']!r} does not start with one of {STATUSES}")
        lat = row.get("latency")
        if kind == "ok" and lat is None:
            problems.append(f"{where}: status ok but no latency figures")
        if kind != "ok" and lat is not None:
            problems.append(f"{where}: status {kind} but latency figures reported")
        if isinstance(lat, dict):
            _check(lat, LATENCY, f"{where}.latency", problems)
            if isinstance(lat.get("n"), int) and lat["n"] < runs:
                problems.append(f"{where}.latency.n: {lat['n']} runs < requested {runs}")
        if isinstance(row.get("accuracy"), dict):
            _check(row["accuracy"], ACCURACY, f"{where}.accuracy", problems)
        if isinstance(row.get("estimate"), dict):
            _check(row["estimate"], ESTIMATE, f"{where}.estimate", problems)
            if "estimate" not in row["estimate"].get("label", ""):
                problems.append(f"{where}.estimate.label: must say 'estimate'")
    failed = [r for r in doc["rows"] if isinstance(r, dict) and str(r.get("status", "")).startswith("failed")]
    if len(failed) != len(doc["failures"]):
        problems.append(f"failures: {len(doc['failures'])} listed but {len(failed)} rows failed")
    return problems


def _check_list(items: Any, spec: dict[str, Any], where: str, problems: list[str]) -> None:
    for i, item in enumerate(items if isinstance(items, list) else []):
        _check(item, spec, f"{where}[{i}]", problems)


def check(doc: Any) -> None:
    problems = validate(doc)
    if problems:
        raise ValueError("invalid results.json: " + "; ".join(problems[:10]))
