"""A throwaway copy of the checkout that imports as ``dali_relabel``: mutants are applied there, never here.

Mutating the checkout itself would leave a mutant in place if a run is interrupted (and break whatever else
runs from it meanwhile). The copy holds the files git tracks plus untracked ones it does not ignore, and a
link ``dali_relabel/pipelines -> ../pipelines`` (setup.cfg installs the top-level ``pipelines/`` as
``dali_relabel.pipelines``); with ``PYTHONPATH=<copy>`` the interpreter finds the copy's package before the
editable install of the checkout, and pytest, run from the copy, finds its ``tests/`` and ``setup.cfg``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_copy(prefix: str) -> Path:
    """Copies the checkout into a new temporary directory; returns it (the caller removes it)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    dest = Path(tempfile.mkdtemp(prefix=prefix))
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():  # deleted-but-tracked files are skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "dali_relabel" / "pipelines").symlink_to("../pipelines")
    check = subprocess.run([sys.executable, "-c", "import dali_relabel, dali_relabel.pipelines as p; "
                            "print(dali_relabel.__file__); print(p.__file__)"],
                           cwd=dest, env=copy_env(dest), capture_output=True, text=True)
    found = check.stdout.split()
    if check.returncode or not all(Path(f).resolve().is_relative_to(dest.resolve()) for f in found):
        shutil.rmtree(dest, ignore_errors=True)
        raise RuntimeError(f"the copy does not import as dali_relabel (got {found or check.stderr.strip()})")
    return dest


def copy_env(copy: Path, **extra: str) -> dict[str, str]:
    """The environment that makes ``copy`` the imported package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env
