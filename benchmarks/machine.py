"""Where the numbers came from: CPU, cores, library versions, the BLAS and its kernel, the date."""
from __future__ import annotations

import datetime
import os
import platform


#: The CPU flags that decide which SIMD kernels NumPy, OpenBLAS, pocketfft and oneDNN run.
SIMD_PREFIXES = ("sse4", "avx", "fma", "amx", "f16c")


def cpuinfo(field: str) -> str | None:
    """The first CPU's ``field`` in ``/proc/cpuinfo`` (None where there is no such file or field)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> list[str]:
    """Every flag ``/proc/cpuinfo`` lists for the first CPU (empty where there is none)."""
    return (cpuinfo("flags") or "").split()


def simd_flags(flags=None) -> list[str]:
    return [f for f in (cpu_flags() if flags is None else flags) if f.startswith(SIMD_PREFIXES)]


def cpu_line(info: dict) -> str:
    """The CPU model and its SIMD flags, as printed beside every table of kernel figures."""
    return f"CPU: {info['cpu']}; SIMD flags: {' '.join(info.get('simd_flags') or ['unknown'])}"


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    import numpy as np
    import threadpoolctl
    import torch

    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
        for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"
    ]
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "simd_flags": simd_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numpy_blas": blas,
        "torch_backend": torch.__config__.parallel_info().splitlines()[-1].strip(),
        # These change OpenBLAS's kernel choice and block sizes; reported, never changed here.
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                            "OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "platform": platform.platform(),
        # On a shared machine other tenants' load moves every absolute number; ratios are alternated.
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
