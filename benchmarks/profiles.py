"""Portable-device profiles emulated on the host: pin to N cores, run N threads.

This is emulation of a core/thread budget, not phone latency (see ``configs/profiles.yaml``). A slowdown
factor is carried only as an explicitly labelled estimate and reported in separate ``est_*`` fields.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.errors import InputError

DEFAULT_PROFILES = Path(__file__).resolve().parents[1] / "configs" / "profiles.yaml"
PROFILES_VERSION = 1
BUILTIN_TARGETS = ("host", "android")


@dataclass(frozen=True)
class Slowdown:
    factor: float
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {"factor": self.factor, "estimate": True, "basis": self.basis}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    cores: int
    threads: int
    cpus: tuple[int, ...] | None = None
    slowdown: Slowdown | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "cores": self.cores, "threads": self.threads,
                "cpus": list(self.cpus) if self.cpus else None,
                "slowdown": self.slowdown.to_json() if self.slowdown else None,
                "kind": "host emulation (pinned cores + threads), not phone latency"}


def load_profiles(path: str | Path | None = None) -> dict[str, Profile]:
    path = Path(path) if path else DEFAULT_PROFILES
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: profiles file not found") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != PROFILES_VERSION:
        raise InputError(f"{path}: expected a mapping with schema_version: {PROFILES_VERSION}")
    raw = doc.get("profiles")
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: 'profiles' must be a non-empty mapping of name -> profile")
    return {name: _parse_profile(name, spec, path) for name, spec in raw.items()}


def _parse_profile(name: str, spec: Any, path: Path) -> Profile:
    where = f"{path}: profile {name!r}"
    if name in BUILTIN_TARGETS:
        raise InputError(f"{where}: the name is reserved for --target {name}")
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a mapping")
    unknown = set(spec) - {"description", "cores", "cpus", "threads", "slowdown"}
    if unknown:
        raise InputError(f"{where}: unknown field(s) {sorted(unknown)}")
    try:
        cores = int(spec["cores"])
        threads = int(spec["threads"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: needs integer 'cores' and 'threads'") from None
    if cores < 1 or threads < 1:
        raise InputError(f"{where}: cores and threads must be >= 1")
    cpus = spec.get("cpus")
    if cpus is not None:
        if not isinstance(cpus, list) or len(cpus) != cores or not all(isinstance(c, int) and c >= 0 for c in cpus):
            raise InputError(f"{where}: 'cpus' must list exactly {cores} CPU id(s)")
        cpus = tuple(cpus)
    slowdown = None
    if spec.get("slowdown") is not None:
        s = spec["slowdown"]
        # A slowdown is a model, not a measurement: refuse it unless it says so and says why.
        if not isinstance(s, dict) or s.get("estimate") is not True or not str(s.get("basis", "")).strip():
            raise InputError(f"{where}: 'slowdown' must be a mapping with factor, 'estimate: true' and a "
                             f"'basis' saying where the factor comes from")
        try:
            factor = float(s["factor"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: slowdown needs a numeric 'factor'") from None
        if factor <= 0:
            raise InputError(f"{where}: slowdown factor must be > 0")
        slowdown = Slowdown(factor, " ".join(str(s["basis"]).split()))
    return Profile(name, str(spec.get("description", "")), cores, threads, cpus, slowdown)


def resolve_target(target: str, profiles_file: str | Path | None = None) -> tuple[str, Profile | None]:
    """``host`` / ``android`` / a profile name -> (kind, profile)."""
    if target in BUILTIN_TARGETS:
        return target, None
    profiles = load_profiles(profiles_file)
    if target not in profiles:
        names = list(BUILTIN_TARGETS) + sorted(profiles)
        close = difflib.get_close_matches(target, names, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise InputError(f"unknown --target {target!r}{hint} (available: {', '.join(names)})")
    return "profile", profiles[target]


def _tasks() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def set_process_affinity(cpus: set[int]) -> None:
    """Pin every existing thread of this process (os.sched_setaffinity(0) pins only the calling thread,
    and runtime pools created earlier, e.g. torch's, would keep running everywhere)."""
    for tid in _tasks():
        with contextlib.suppress(ProcessLookupError):  # a thread may exit between listing and pinning
            os.sched_setaffinity(tid, cpus)


def choose_cpus(profile: Profile) -> tuple[set[int], list[str]]:
    """The CPUs a profile pins to, and warnings (e.g. more cores wanted than this machine allows)."""
    if not hasattr(os, "sched_setaffinity"):
        raise InputError(f"--target {profile.name}: core pinning needs os.sched_setaffinity (Linux); "
                         f"use --target host with --threads instead")
    allowed = sorted(os.sched_getaffinity(0))
    warnings: list[str] = []
    if profile.cpus:
        bad = [c for c in profile.cpus if c not in allowed]
        if bad:
            raise InputError(f"profile {profile.name!r}: CPU(s) {bad} not available (allowed: {allowed})")
        return set(profile.cpus), warnings
    if profile.cores > len(allowed):
        warnings.append(f"profile {profile.name!r} wants {profile.cores} cores but only {len(allowed)} are "
                        f"available: its {profile.threads} threads share {len(allowed)} core(s) (oversubscribed)")
    return set(allowed[: profile.cores]), warnings


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Pin the whole process to ``cpus`` for the block, then restore the previous mask."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    set_process_affinity(cpus)
    try:
        yield
    finally:
        set_process_affinity(before)


def thread_affinities() -> dict[int, list[int]]:
    """Affinity of every thread of this process (recorded in results so pinning is verifiable)."""
    out: dict[int, list[int]] = {}
    for tid in _tasks():
        with contextlib.suppress(ProcessLookupError, OSError):
            out[tid] = sorted(os.sched_getaffinity(tid))
    return out
