"""Plugin build: cache keys, reuse, the two libraries, every CUDA arch, concurrent first builds, progress, errors."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dali_relabel
from dali_relabel.ops import build, toolchain
from dali_relabel.ops.progress import BuildProgress


def test_loaded_plugin_is_reused_from_the_cache():
    loaded = dali_relabel.loaded_plugin()
    assert loaded.path.is_file() and loaded.path.name == "libdali_relabel.so"
    again = build.build(verbose=False)
    assert again.path == loaded.path and again.build_seconds is None and again.cuda is None


def test_cache_keys_follow_sources_and_toolchain(tmp_path):
    csrc = tmp_path / "csrc"
    shutil.copytree(build._sources.CSRC, csrc)
    tc = dataclasses.replace(build.toolchain(), nvcc="/x/nvcc", nvcc_version="V13.0", archs=(80, 90))
    cpu, cuda = build.cpu_cache_key(tc, csrc), build.cuda_cache_key(tc, csrc)
    assert (build.cpu_cache_key(tc, csrc), build.cuda_cache_key(tc, csrc)) == (cpu, cuda)  # deterministic

    def edit(path: Path) -> None:
        path.write_text(path.read_text() + "\n// changed\n")

    # A kernel edit rebuilds the CUDA library only; a header edit rebuilds both.
    edit(next(csrc.rglob("*.cu")))
    assert build.cpu_cache_key(tc, csrc) == cpu and build.cuda_cache_key(tc, csrc) != cuda
    cuda = build.cuda_cache_key(tc, csrc)
    edit(csrc / "label_pool" / "label_pool_math.h")
    assert build.cpu_cache_key(tc, csrc) != cpu and build.cuda_cache_key(tc, csrc) != cuda
    cpu, cuda = build.cpu_cache_key(tc, csrc), build.cuda_cache_key(tc, csrc)
    # nvcc and the archs are the CUDA library's business; DALI and the C++ compiler are both libraries'.
    for change in (dict(nvcc_version="V13.1"), dict(archs=(90,))):
        other = dataclasses.replace(tc, **change)
        assert build.cpu_cache_key(other, csrc) == cpu and build.cuda_cache_key(other, csrc) != cuda, change
    assert build.cpu_cache_key(dataclasses.replace(tc, nvcc=None, nvcc_version=None, archs=()), csrc) == cpu
    for change in (dict(dali_version="9.9.9"), dict(cxx_version="g++ 99"), dict(cudart_version="99000")):
        other = dataclasses.replace(tc, **change)
        assert build.cpu_cache_key(other, csrc) != cpu and build.cuda_cache_key(other, csrc) != cuda, change


@pytest.mark.parametrize("archs,message", [
    ("sm_70", "CUDA 13 supports sm_75 and newer"),
    ("eighty", "expected comma-separated SM numbers"),
])
def test_bad_arch_setting_is_explained(monkeypatch, archs, message):
    monkeypatch.setenv("DALI_RELABEL_CUDA_ARCHS", archs)
    with pytest.raises(toolchain.BuildError, match=f"DALI_RELABEL_CUDA_ARCHS='{archs}': {message}"):
        toolchain.target_archs()


def test_target_archs(monkeypatch):
    monkeypatch.delenv("DALI_RELABEL_CUDA_ARCHS", raising=False)
    assert toolchain.target_archs() == (75, 80, 90)              # no GPU to look at: every supported arch
    assert toolchain.target_archs((90, 90)) == (90,)             # the visible GPUs'
    assert toolchain.target_archs((61, 86)) == (86,)             # a GPU older than sm_75 cannot be targeted
    assert toolchain.target_archs((61,)) == (75, 80, 90)
    monkeypatch.setenv("DALI_RELABEL_CUDA_ARCHS", "sm_90, 80")
    assert toolchain.target_archs((86,)) == (80, 90)             # the setting wins
    assert build.gencode_flags((80, 90)) == ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
                                             "-gencode=arch=compute_90,code=compute_90"]


def test_bad_nvcc_setting_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("DALI_RELABEL_NVCC", str(tmp_path / "nvcc"))
    with pytest.raises(toolchain.BuildError, match="is not an executable; unset it or point it at nvcc"):
        toolchain.find_nvcc()


def test_operator_names_come_from_the_schemas():
    from dali_relabel.ops import sources
    from nvidia.dali import backend

    assert sources.operator_classes() == ("CheckImage", "LabelPool", "Lookup")
    assert sources.gpu_operator_classes() == ("LabelPool", "Lookup")
    registered = sorted(n[len("relabel__"):] for n in backend.RegisteredCPUOps() if n.startswith("relabel__"))
    assert list(sources.operator_classes()) == registered
    from nvidia.dali import fn

    assert all(callable(getattr(fn.relabel, name)) for name in sources.operator_functions())


CPU_ONLY_CHILD = textwrap.dedent("""
    import numpy as np
    import dali_relabel
    import dali_relabel.ops.gpus
    dali_relabel.ops.gpus.visible_archs = lambda: ()  # as on a machine without a GPU, wherever the test runs
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        s = fn.external_source(lambda: [np.ones((2, 2, 1), np.float32)], batch=True)
        c = fn.external_source(lambda: [np.zeros((2, 2, 1), np.int32)], batch=True)
        return fn.relabel.label_pool(s, c, rel_start=[0.0, 0.0], rel_end=[1.0, 1.0], num_classes=2)

    p = pipe()   # the first use of fn.relabel builds and loads the plugin
    p.build()
    out = np.array(p.run()[0][0])
    assert abs(out[0] - np.e / (np.e + 1)) < 1e-6, out
    plugin = dali_relabel.loaded_plugin()
    assert not plugin.with_cuda, plugin
    print("PLUGIN:", plugin.path)
""")


def test_concurrent_cpu_only_first_builds_share_one_intact_cache(tmp_path):
    """Two processes using an operator at once, with an empty cache: one compiles, both load the same library."""
    env = {**os.environ, "DALI_RELABEL_CACHE": str(tmp_path / "cache"), "DALI_RELABEL_NVCC": "none"}
    procs = [subprocess.Popen([sys.executable, "-c", CPU_ONLY_CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    paths = {line.split(": ", 1)[1] for out, _ in results for line in out.splitlines() if line.startswith("PLUGIN:")}
    assert len(paths) == 1
    builders = [err for _, err in results if "compiling the DALI plugin's CPU library" in err]
    assert len(builders) == 1, [err for _, err in results]
    # The builder said what it did while it did it: one line per step with its time, then the total.
    n_cc = len(build._sources.sources()[0])
    steps = re.findall(r"^dali_relabel:   \[(\d+)/(\d+)\] (\S+(?: \S+)?) +(\d+\.\d) s$", builders[0], re.MULTILINE)
    assert [int(i) for i, *_ in steps] == list(range(1, n_cc + 2)) and {t for _, t, *_ in steps} == {str(n_cc + 1)}
    assert steps[-1][2] == "link libdali_relabel.so" and re.search(r"^dali_relabel: built in \d+\.\d s$", builders[0],
                                                                   re.MULTILINE), builders[0]
    # Exactly one build directory, no temporaries left behind, nothing but the library and its description.
    builds = [p for p in (tmp_path / "cache").rglob("*") if p.is_dir() and p.parent.name.startswith("dali-")]
    assert [b.name for b in builds] == [Path(next(iter(paths))).parent.name]
    assert sorted(f.name for f in builds[0].iterdir()) == ["build.json", "libdali_relabel.so"]
    assert not any("warning" in err for _, err in results)  # CPU only on a machine without a GPU: the normal case


EVERY_ARCH_CHILD = textwrap.dedent("""
    import json, sys
    import dali_relabel
    from nvidia.dali import backend, ops
    from dali_relabel.ops.gpu_guard import is_guarded

    import nvidia.dali.experimental.dynamic as ndd
    assert dali_relabel.load_plugin(cuda=False).cuda is None   # the CPU library first, as on first use
    assert ndd.relabel.label_pool._op_class._supported_backends == {"cpu"}
    plugin = dali_relabel.load_plugin(cuda=True)
    assert plugin.archs == (75, 80, 90), plugin
    # Dynamic mode, imported before, now offers the GPU backend too (its operator table was rebuilt).
    assert ndd.relabel.label_pool._op_class._supported_backends == {"cpu", "gpu"}
    # DALI took the second library's GPU registrations for the schemas the first one registered.
    gpu_ops = sorted(n for n in backend.RegisteredGPUOps() if n.startswith("relabel__"))
    assert gpu_ops == ["relabel__LabelPool", "relabel__Lookup"], gpu_ops
    for op in gpu_ops:
        assert sorted(backend.GetSchema(op).GetSupportedBackends()) == ["cpu", "gpu"], op
    assert not is_guarded(ops.relabel.LabelPool)   # with the CUDA library loaded, DALI's own constructors
    print(json.dumps({"cpu": str(plugin.cpu.path), "cuda": str(plugin.cuda.path)}))
""")


def test_cuda_library_for_every_supported_arch():
    """CI compiles the CUDA library for every supported arch (sm_75, sm_80, sm_90 + PTX) and loads it second.

    LD_BIND_NOW makes the loader resolve every symbol when the libraries are opened (not at first call), so
    a symbol the CUDA library needs from the CPU library but cannot find fails here. No GPU is needed: the
    CUDA library links the CUDA runtime statically and loads without a driver.
    """
    nvcc = toolchain.find_nvcc()
    if nvcc is None:
        pytest.skip("no nvcc: the CUDA library cannot be compiled here (CI has nvcc)")
    env = {**os.environ, "DALI_RELABEL_CUDA_ARCHS": "75,80,90", "LD_BIND_NOW": "1"}
    r = subprocess.run([sys.executable, "-c", EVERY_ARCH_CHILD], env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    libs = json.loads(r.stdout.strip().splitlines()[-1])
    cuda = Path(libs["cuda"])
    assert cuda.parent.parent == Path(libs["cpu"]).parent and cuda.name == "libdali_relabel_cuda.so"
    dynamic = subprocess.run(["readelf", "-d", str(cuda)], capture_output=True, text=True).stdout
    assert "[libdali_relabel.so]" in dynamic and "$ORIGIN/.." in dynamic, dynamic
    cuobjdump = Path(nvcc).resolve().parent / "cuobjdump"
    if cuobjdump.is_file():  # the embedded code: real code for each arch and PTX of the highest
        listing = subprocess.run([str(cuobjdump), "--list-elf", "--list-ptx", str(cuda)], capture_output=True,
                                 text=True).stdout
        assert {f"sm_{a}" for a in (75, 80, 90)} <= set(re.findall(r"\bsm_\d+", listing)), listing
        assert re.search(r"\.sm_90\.ptx|compute_90", listing), listing


def test_build_command_reports_the_plugin():
    out = subprocess.run([sys.executable, "-m", "dali_relabel.cli", "build"], capture_output=True, text=True,
                         check=True).stdout
    plugin = dali_relabel.loaded_plugin()
    assert f"DALI {plugin.dali_version}" in out and str(plugin.path) in out
    assert ("CUDA (sm_" in out) == plugin.with_cuda
    if not plugin.with_cuda:
        assert "CUDA: not built (built on first GPU use, or by `dali-relabel build --cuda`)" in out


def test_build_command_help_documents_the_environment():
    out = subprocess.run([sys.executable, "-m", "dali_relabel.cli", "build", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for text in ("--cuda", "--force", "DALI_RELABEL_NVCC", "'none'", "DALI_RELABEL_CUDA_ARCHS", "DALI_RELABEL_CACHE",
                 "CXX", "libdali_relabel_cuda.so"):
        assert text in out, text


def test_build_command_without_nvcc_says_what_to_do():
    env = {**os.environ, "DALI_RELABEL_NVCC": "none"}
    r = subprocess.run([sys.executable, "-m", "dali_relabel.cli", "build", "--cuda"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("dali-relabel build: error: the dali_relabel operators' CUDA backend cannot be built: "
                               "DALI_RELABEL_NVCC=none disables it.") and "Traceback" not in r.stderr, r.stderr


def _python_step(name: str, code: str) -> build.Step:
    return build.Step(name, [sys.executable, "-c", code])


def test_steps_are_reported_as_they_finish():
    """Two steps in parallel: the quick one is reported first, with its own time; then the link alone."""
    stream = io.StringIO()
    progress = BuildProgress("compiling test", total=3, stream=stream)
    build.run_steps([_python_step("slow.cc", "import time; time.sleep(1.0)"), _python_step("quick.cc", "pass"),
                     _python_step("link", "pass")], progress, jobs=2)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "dali_relabel: compiling test"
    names = [re.match(r"dali_relabel:   \[(\d)/3\] (\S+) +(\d+\.\d) s$", line).groups() for line in lines[1:4]]
    assert [(i, n) for i, n, _ in names] == [("1", "quick.cc"), ("2", "slow.cc"), ("3", "link")]
    assert float(names[0][2]) < 0.8 <= float(names[1][2])
    assert re.fullmatch(r"dali_relabel: built in \d+\.\d s", lines[4]) and len(lines) == 5


def test_a_failed_step_reports_its_command_and_output():
    stream = io.StringIO()
    progress = BuildProgress("compiling test", total=3, stream=stream)
    with pytest.raises(toolchain.BuildError) as e:
        build.run_steps([_python_step("bad.cc", "import sys; print('bad.cc:1: error: nope'); sys.exit(1)"),
                         _python_step("good.cc", "pass"), _python_step("link", "raise SystemExit('never run')")],
                        progress, jobs=2)
    assert "compiling the dali_relabel plugin failed:" in str(e.value) and "bad.cc:1: error: nope" in str(e.value)
    assert "never run" not in str(e.value)
    assert re.search(r"\[\d/3\] bad.cc +FAILED after \d+\.\d s", stream.getvalue()), stream.getvalue()


def test_quiet_progress_prints_nothing_and_a_terminal_gets_a_live_line():
    quiet = io.StringIO()
    p = BuildProgress("compiling test", total=1, stream=quiet, verbose=False)
    p.start("a.cc")
    p.finish("a.cc")
    p.close()
    assert quiet.getvalue() == ""
    tty = io.StringIO()
    p = BuildProgress("compiling test", total=1, stream=tty, live=True)
    p.start("a.cc")
    import time

    time.sleep(0.5)
    p.finish("a.cc")
    p.close()
    text = tty.getvalue()
    assert re.search(r"\r\x1b\[Kdali_relabel: [|/\\-] \[0/1\] a\.cc 0 s", text), repr(text)   # the live line
    assert text.endswith("\r\x1b[Kdali_relabel: built in 0.5 s\n") or "built in" in text.splitlines()[-1]
