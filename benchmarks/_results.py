"""One JSON file per benchmark run, read by the book's performance page.

``write_results(benchmark, device, rows, summary)`` writes
``benchmarks/results/<benchmark>_<device type>.json`` atomically, with exactly these keys:

- ``"benchmark"``: the script's name without ``bench_`` and ``.py`` (``"recall"``);
- ``"command"``: the command line that produced it;
- ``"date"``: ISO 8601, local time with its offset;
- ``"machine"``: ``{"cpu": model name, "cores": logical CPUs, "gpu": name or null, "torch": version}``;
- ``"rows"``: the table the script prints, a list of dicts;
- ``"summary"``: the last line's ratios as numbers.

Imported by the scripts as ``from _results import write_results`` (the scripts put their
own folder on ``sys.path`` when run as ``python benchmarks/bench_x.py``).
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KEYS = ("benchmark", "command", "date", "machine", "rows", "summary")

__all__ = ["write_results", "machine", "cpu_model", "command_line", "RESULTS_DIR", "KEYS"]


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo (lscpu's source) where there is one."""
    try:
        match = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine(device: str = "cpu") -> dict[str, Any]:
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    gpu = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"cpu": cpu_model(), "cores": cores, "gpu": gpu, "torch": torch.__version__}


def command_line(argv: list[str] | None = None) -> str:
    """The command as a reader would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        pass
    return shlex.join([".venv/bin/python", str(script), *argv[1:]])


def write_results(benchmark: str, device: str, rows: list[dict[str, Any]], summary: dict[str, float], *,
                  command: str | None = None, directory: str | os.PathLike | None = None) -> Path:
    """Write the JSON file of one run; return its path."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from rkd.runtime import atomic_write_json

    device_type = str(device).split(":")[0]
    record = {
        "benchmark": benchmark,
        "command": command if command is not None else command_line(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(device),
        "rows": [dict(row) for row in rows],
        "summary": {str(k): float(v) for k, v in summary.items()},
    }
    path = Path(directory or RESULTS_DIR) / f"{benchmark}_{device_type}.json"
    atomic_write_json(record, path)
    return path
