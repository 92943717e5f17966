"""The machine a benchmark ran on: every figure is meaningless without it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, RAM and library versions: the context every figure needs."""
    cpu = "unknown"
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        cpu = platform.processor() or "unknown"
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import numpy
    import onnxruntime

    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "simd": simd, "ram_gib": mem_gib,
            "python": platform.python_version(), "numpy": numpy.__version__,
            "onnxruntime": onnxruntime.__version__,
            "load_average": list(os.getloadavg())}
