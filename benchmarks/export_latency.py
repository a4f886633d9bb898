"""Size and 1-thread latency of every artifact of an export dir, beside PyTorch eager fp32.

A quick look after ``ssdkd-export`` (no memory probes, no accuracy, nothing written)::

    python -m benchmarks.export_latency runs/student/export [--runs 50 --min-seconds 1]

For the full picture (threads, memory, accuracy, plots) use ``ssdkd-bench``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.errors import InputError


def table(results_doc: dict) -> str:
    lines = [f"{'artifact':28s} {'runtime':12s} {'size MB':>8s} {'p50 ms':>8s} {'p90 ms':>8s} {'vs torch':>9s}  status"]
    for r in results_doc["rows"]:
        lat = r["latency"] or {}
        p50, p90, ratio = lat.get("p50_ms"), lat.get("p90_ms"), r["p50_ratio_to_torch"]
        lines.append(f"{r['artifact']:28s} {r['runtime']:12s} {r['size_bytes'] / 2**20:8.2f} "
                     f"{p50 if p50 is not None else float('nan'):8.3f} {p90 if p90 is not None else float('nan'):8.3f} "
                     f"{(f'{ratio:.2f}x') if ratio is not None else '—':>9s}  {r['status']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.export_latency", description=__doc__.splitlines()[0])
    p.add_argument("export_dir", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="PyTorch reference (default: from the export report)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    from benchmarks.harness import run_benchmark

    try:
        res = run_benchmark([args.export_dir], checkpoint=args.checkpoint, threads=[1], runs=args.runs,
                            min_seconds=args.min_seconds, warmup=args.warmup, memory=False, out=None, plots=False)
    except InputError as e:
        print(f"export_latency: {e}", file=sys.stderr)
        return 2
    print(table(res.doc))
    print("vs torch: p50 latency / PyTorch eager fp32 p50 (1 thread, same run, interleaved)")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
