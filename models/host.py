"""The host CPU's instruction sets that decide which 8-bit kernels a runtime runs.

Recorded with every export verification and benchmark, because an int8 file's speed and (for kernels that
saturate) its outputs depend on them: x86 CPUs with VNNI (AVX512-VNNI, AVX-VNNI) or AMX sum 8-bit products into
32 bits in one instruction; x86 CPUs without VNNI fall back to AVX2's VPMADDUBSW, whose 16-bit intermediate sums can
saturate and which is rarely faster than fp32 FMA at batch 1; ARMv8.2+ cores (every recent phone) have SDOT/UDOT
(``dotprod``) and often I8MM. Reads ``/proc/cpuinfo`` only: no import beyond the standard library, so a memory
probe can call it.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> the name we report, in the order a reader wants them.
X86_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
                "amx_int8": "AMX-INT8"}
ARM_FEATURES = {"asimddp": "dotprod", "i8mm": "i8mm"}
# Features that give the CPU a 32-bit-accumulating 8-bit dot product.
INT8_DOT = {"AVX512-VNNI", "AVX-VNNI", "AMX-INT8", "dotprod", "i8mm"}


def _cpuinfo(path: Path) -> tuple[str | None, set[str]]:
    model, flags = None, set()
    try:
        text = path.read_text()
    except OSError:
        return None, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    return model, flags


def host_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """``{"cpu_model", "machine", "isa": [...], "int8_dot_product": bool, "int8_note": str}`` for this host."""
    model, flags = _cpuinfo(Path(cpuinfo))
    table = ARM_FEATURES if platform.machine().lower() in ("aarch64", "arm64") else X86_FEATURES
    isa = [name for flag, name in table.items() if flag in flags]
    dot = bool(INT8_DOT & set(isa))
    return {"cpu_model": model or platform.processor() or None, "machine": platform.machine(), "isa": isa,
            "int8_dot_product": dot, "int8_note": int8_note(isa, known=bool(flags))}


def int8_note(isa: list[str], *, known: bool = True) -> str:
    """One line on what this CPU means for int8 speed."""
    if not known:
        return "CPU features unknown (no /proc/cpuinfo): int8 speed on this host cannot be explained"
    have = sorted(INT8_DOT & set(isa))
    if have:
        return f"8-bit dot-product instructions present ({', '.join(have)}): int8 kernels run at full speed"
    if "AVX2" in isa:
        return ("no 8-bit dot-product instructions (no VNNI) on this CPU: int8 runs on AVX2 VPMADDUBSW with 16-bit "
                "intermediate sums and is often no faster than fp32 here; phones (ARMv8.2 dotprod) and VNNI CPUs "
                "are faster in int8")
    return "no 8-bit dot-product instructions on this CPU: int8 kernels run without them and may be slow"
