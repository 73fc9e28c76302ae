"""Plugin build: cache keying, reuse, concurrent first builds, CPU-only builds, configuration errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dali_relabel
from dali_relabel.ops import build


def test_loaded_plugin_is_reused_from_the_cache():
    loaded = dali_relabel.loaded_plugin()
    assert loaded.path.is_file()
    again = build.build(verbose=False)
    assert again.path == loaded.path and again.build_seconds is None


def test_cache_key_follows_sources_and_toolchain(tmp_path, monkeypatch):
    csrc = tmp_path / "csrc"
    shutil.copytree(build.CSRC, csrc)
    monkeypatch.setattr(build, "CSRC", csrc)
    tc = build.toolchain()
    key = build.cache_key(tc)
    assert build.cache_key(tc) == key
    header = csrc / "label_pool" / "label_pool_math.h"
    header.write_text(header.read_text() + "\n// changed\n")
    changed = build.cache_key(tc)
    assert changed != key
    import dataclasses

    assert build.cache_key(dataclasses.replace(tc, dali_version="9.9.9")) != changed
    assert build.cache_key(dataclasses.replace(tc, nvcc=None, nvcc_version=None, archs=())) != changed


@pytest.mark.parametrize("archs,message", [
    ("sm_70", "CUDA 13 supports sm_75 and newer"),
    ("eighty", "expected comma-separated SM numbers"),
])
def test_bad_arch_setting_is_explained(monkeypatch, archs, message):
    monkeypatch.setenv("DALI_RELABEL_CUDA_ARCHS", archs)
    if build.find_nvcc() is None:
        pytest.skip("no nvcc: archs are not parsed")
    with pytest.raises(build.BuildError, match=message):
        build.toolchain()


def test_bad_nvcc_setting_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("DALI_RELABEL_NVCC", str(tmp_path / "nvcc"))
    with pytest.raises(build.BuildError, match="is not an executable; unset it or point it at nvcc"):
        build.find_nvcc()


CPU_ONLY_CHILD = textwrap.dedent("""
    import numpy as np
    import dali_relabel
    from nvidia.dali import fn, pipeline_def

    plugin = dali_relabel.load_plugin()
    assert not plugin.with_cuda, plugin

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        s = fn.external_source(lambda: [np.ones((2, 2, 1), np.float32)], batch=True)
        c = fn.external_source(lambda: [np.zeros((2, 2, 1), np.int32)], batch=True)
        return fn.relabel.label_pool(s, c, rel_start=[0.0, 0.0], rel_end=[1.0, 1.0], num_classes=2)

    p = pipe()
    p.build()
    out = np.array(p.run()[0][0])
    assert abs(out[0] - np.e / (np.e + 1)) < 1e-6, out
    try:
        pipe_gpu = pipeline_def(batch_size=1, num_threads=1, device_id=None)(
            lambda: fn.relabel.label_pool(fn.external_source(name="s").gpu(), fn.external_source(name="c").gpu(),
                                          rel_start=[0.0, 0.0], rel_end=[1.0, 1.0], num_classes=2))()
    except RuntimeError as e:
        print("GPU-ERROR:", e)
    print("PLUGIN:", plugin.path)
""")


def test_concurrent_cpu_only_first_builds_share_one_intact_cache(tmp_path):
    """Two processes importing at once into an empty cache: one compiles, both load the same .so."""
    env = {**os.environ, "DALI_RELABEL_CACHE": str(tmp_path / "cache"), "DALI_RELABEL_NVCC": "none"}
    procs = [subprocess.Popen([sys.executable, "-c", CPU_ONLY_CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    paths = {line.split(": ", 1)[1] for out, _ in results for line in out.splitlines() if line.startswith("PLUGIN:")}
    assert len(paths) == 1
    compiled = sum("compiling the DALI plugin" in err for _, err in results)
    assert compiled == 1, [err for _, err in results]
    # Exactly one build directory, no temporaries left behind.
    builds = [p for p in (tmp_path / "cache").rglob("*") if p.is_dir() and p.parent.name.startswith("dali-")]
    assert [b.name for b in builds] == [Path(next(iter(paths))).parent.name]
    # A CPU-only plugin warns once and refuses device="gpu" with instructions.
    assert all("built without its CUDA backend" in err for _, err in results)
    for out, _ in results:
        assert "GPU-ERROR: the dali_relabel plugin was built without its CUDA backend" in out
        assert "dali-relabel build --force" in out


def test_build_command_reports_the_plugin():
    out = subprocess.run([sys.executable, "-m", "dali_relabel.cli", "build"], capture_output=True, text=True,
                         check=True).stdout
    plugin = dali_relabel.loaded_plugin()
    assert f"DALI {plugin.dali_version}" in out and str(plugin.path) in out
    assert ("CPU + CUDA (sm_" in out) == plugin.with_cuda
