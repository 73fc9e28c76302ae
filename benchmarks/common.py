"""Helpers shared by the benchmark scripts: machine description, commit, timing, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    """Short commit of the checkout, with '+dirty' when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    return None


def machine() -> dict:
    """What the numbers were measured on."""
    import nvidia.dali as dali
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(), "cores": cores, "gpu": gpu_name(), "python": platform.python_version(),
        "dali": dali.__version__, "torch": torch.__version__, "host": platform.node(),
    }


def median_time(fn: Callable[[], object], repeats: int, inner: int = 1, sync: Callable[[], None] | None = None) -> float:
    """Median over `repeats` of the mean seconds per call of `inner` back-to-back calls."""
    samples = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        if sync:
            sync()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def write_result(name: str, payload: dict, path: str | Path | None = None) -> Path:
    """Writes `payload` plus date/machine/commit as JSON; default `results/<name>-<date>-<device>.json`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    payload = {"benchmark": name, "date": now.isoformat(timespec="seconds"), "commit": git_commit(),
               "machine": machine(), **payload}
    if path is None:
        device = "gpu" if payload["machine"]["gpu"] else "cpu"
        path = RESULTS / f"{name}-{now:%Y%m%d}-{device}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows -> markdown; columns are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) if r.get(k) is not None else "—" for k, _, f in columns) + " |"
            for r in rows]
    return "\n".join([head, rule, *body])
