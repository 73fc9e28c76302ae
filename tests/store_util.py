"""Helpers for the store/bank/importer tests: small synthetic stores, child Python processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from dali_relabel import LabelStore
from dali_relabel.testing.synthetic import synthetic_label_maps

GEOMETRY = dict(height=6, width=5, k=3, num_classes=50)


def keys_for(n: int) -> list[str]:
    return [f"n{i % 4:02d}/img_{i:05d}.JPEG" for i in range(n)]


def create_store(url, n: int = 100, block_size: int = 16, **kw) -> LabelStore:
    args = dict(GEOMETRY, keys=keys_for(n), labels=np.arange(n) % 4, block_size=block_size,
                annotator={"model": "synthetic", "input_size": 64})
    args.update(kw)
    return LabelStore.create(url, **args)


def block_data(store: LabelStore, block: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = store.block_rows(block)
    return synthetic_label_maps(len(r), height=store.height, width=store.width, k=store.k,
                                num_classes=store.num_classes, seed=seed, start=r.start)


def fill(store: LabelStore, blocks=None, seed: int = 0) -> None:
    for b in range(store.num_blocks) if blocks is None else blocks:
        store.write_block(b, *block_data(store, b, seed))


def run_python(code: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (a separate process, like another rank or a crashed writer)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def barrier(directory: str, me: int, parties: int, timeout: float = 60.0) -> None:
    """Returns once all `parties` processes called it with the same directory (so they then run together)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / str(me)).touch()
    deadline = time.time() + timeout
    while len(list(d.iterdir())) < parties:
        if time.time() > deadline:
            raise TimeoutError(f"barrier {d}: only {len(list(d.iterdir()))} of {parties} arrived")
        time.sleep(0.01)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """{relative path: content} of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
