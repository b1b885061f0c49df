"""The environment a sandboxed script gets: an allowlisted part of the flow's, this Python first on PATH."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The only variables a script gets from the flow's environment; everything else (credentials, API URLs
# with passwords, the Prefect auth string, agent sockets) stays out. Locale variables (LC_*) pass too.
ENV_ALLOWLIST = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "NO_COLOR", "COLUMNS",
    "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "PYTHONIOENCODING", "PYTHONUTF8",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "MPLBACKEND", "MPLCONFIGDIR",
})


def child_env() -> dict[str, str]:
    """The allowlisted part of the parent's environment, with this Python's folder first on PATH."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWLIST or k.startswith("LC_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    env["PYTHONUNBUFFERED"] = "1"
    return env
