"""Which CPU this process runs on, and the instruction sets that decide onnxruntime's int8 path.

Every speed figure names its CPU (benchmark JSON, ``/healthz``), because int8 speed depends on these sets:
x86-64 with AVX-512 VNNI / AVX-VNNI / AMX multiplies u8 x s8 with 32-bit accumulation; AVX2 or AVX-512 without
VNNI uses ``VPMADDUBSW`` (16-bit pair sums); ARM uses NEON, and ``dotprod`` where present.
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from pathlib import Path

# The flags that decide the int8 kernels, in the names Linux's /proc/cpuinfo uses (``amx`` = any AMX flag).
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx", "neon", "dotprod")


def _cpuinfo_fields(text: str) -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo's first processor block (x86 ``flags``, ARM ``Features``)."""
    model, flags = "", set[str]()
    for line in text.splitlines():
        if not line.strip():
            if model or flags:
                break
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags = set(value.split())
    return model, flags


def int8_instruction_sets(flags: set[str]) -> list[str]:
    """The int8-relevant subset of a CPU's flags, in :data:`INT8_FLAGS` order (ARM ``asimd``/``asimddp`` are
    reported as ``neon``/``dotprod``)."""
    present = set(flags)
    if "asimd" in present:
        present.add("neon")
    if "asimddp" in present:
        present.add("dotprod")
    if any(f.startswith("amx") for f in present):
        present.add("amx")
    return [f for f in INT8_FLAGS if f in present]


def _instruction_sets() -> list[str]:
    sets = cpu_info()["instruction_sets"]
    assert isinstance(sets, list)
    return sets


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """``{"model", "machine", "cores", "instruction_sets"}`` of this machine (cores = those this process may use)."""
    text = ""
    with contextlib.suppress(OSError):  # not Linux: the model from platform, no flags
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    model, flags = _cpuinfo_fields(text)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        cores = os.cpu_count() or 1
    return {
        "model": model or platform.processor() or "unknown",
        "machine": platform.machine(),
        "cores": cores,
        "instruction_sets": int8_instruction_sets(flags),
    }



# Where onnxruntime's integer kernels beat fp32. Measured: AMD EPYC (Zen 5, AVX-512 VNNI) and, from the issue's
# figures, AMD EPYC with AVX2 only (int8 5.3-5.7 ms per face against fp32 10.6-11.3 ms); see docs/benchmarks.md.
FAST_INT8_SETS = frozenset({"avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx", "dotprod"})


def preferred_precision(sets: list[str] | None = None) -> str:
    """``int8`` where this CPU has a fast integer path (x86-64 AVX2 or better, ARM dotprod), else ``fp32``."""
    present = set(_instruction_sets() if sets is None else sets)
    return "int8" if present & FAST_INT8_SETS else "fp32"
