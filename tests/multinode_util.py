"""Shared by the multi-node tests: torchrun "nodes" on localhost, and an object-store stand-in for fsspec URLs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Makes fsspec's "local://" file system create parent directories on write, as an object store needs none.
OBJECT_STORE_ENV = {"FSSPEC_LOCAL": '{"auto_mkdir": true}'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_nodes(nodes: int, per_node: int, args: list[str], tmp_path: Path, timeout: float = 300) -> list[str]:
    """Starts ``nodes`` torchrun launchers (--node-rank 0..), each with its own bank directory; returns outputs."""
    port = free_port()
    procs = []
    for node in range(nodes):
        env = dict(os.environ, OMP_NUM_THREADS="1", DALI_RELABEL_BANK_DIR=str(tmp_path / f"node{node}" / "banks"),
                   PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **OBJECT_STORE_ENV)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node",
               str(per_node), "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
               "--max-restarts", "0", *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * nodes, "\n".join(outputs)[-6000:]
    return outputs
