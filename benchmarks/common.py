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


def per_copy_seconds(with_copies, without, copies: int, rounds: int, iters: int) -> float:
    """Seconds per run that one copy of an operator adds to a pipeline, as a slope.

    ``(T(with_copies) - T(without)) / copies`` per round, each T the median of 3 timings of ``iters`` runs,
    the two pipelines alternated; the median over ``rounds``. Both pipelines must be built and warmed up.
    """
    slopes = []
    for _ in range(rounds):
        t_with = median_time(with_copies.run, repeats=3, inner=iters)
        t_without = median_time(without.run, repeats=3, inner=iters)
        slopes.append((t_with - t_without) / copies)
    return statistics.median(slopes)


def write_result(name: str, payload: dict, path: str | Path | None = None, *, tag: str | None = None) -> Path:
    """Writes `payload` plus date/machine/commit as JSON.

    The default path is `results/<name>-<date>-<device>[-<tag>].json`, where device is the payload's
    "device" ("cpu"/"gpu", what was measured) if it has one, else "gpu" when the machine has a GPU.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    payload = {"benchmark": name, "date": now.isoformat(timespec="seconds"), "commit": git_commit(),
               "machine": machine(), **payload}
    if path is None:
        device = payload.get("device") or ("gpu" if payload["machine"]["gpu"] else "cpu")
        path = RESULTS / f"{name}-{now:%Y%m%d}-{device}{f'-{tag}' if tag else ''}.json"
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
