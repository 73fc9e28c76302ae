"""What nvcc makes of each kernel (ptxas -v for sm_90) against what the launch code and the simulator
assume: static shared memory (budgeted from cudaFuncGetAttributes at run time, modelled by cudasim
from the __shared__ declarations), registers per thread (a 256-thread block must fit the register
file). Needs nvcc (it is in CI); the ptxas report is cached by source hash."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from bank_util import write_bank
from label_pool_cases import SCORE_CLASS_DTYPES, make_batch

from cudasim import harness, ops
from cudasim.harness import CSRC, Session

pytestmark = pytest.mark.cudasim

ARCH = 90
REGISTERS_PER_BLOCK = 65536  # sm_90 (and every arch from sm_50)


SELFTEST = harness.SIM / "selftest" / "selftest_kernels.cu"


def kernel_sources() -> list[Path]:
    return [p for p in harness.operator_sources() if p.suffix == ".cu" and "__global__" in p.read_text()]


def ptxas_report() -> dict[str, list[dict]]:
    """{source: [{"entry": mangled name, "registers": n, "smem": bytes}]} from `nvcc -Xptxas -v`, for the
    project's kernels and the simulator's self-test kernels ("selftest")."""
    from dali_relabel.ops.toolchain import BuildError, find_nvcc, toolchain

    if find_nvcc() is None:
        pytest.skip("nvcc not found (set DALI_RELABEL_NVCC or CUDA_HOME)")
    try:
        tc = toolchain(cuda=True, archs=(ARCH,))
    except BuildError as e:
        pytest.skip(f"no CUDA toolchain: {e}")
    # The plugin's device-code flags (dali_relabel/ops/build.py, cuda_steps), for one architecture; -cubin
    # skips the host compilation, which ptxas's report does not need.
    flags = ["-std=c++20", "-O3", "--expt-relaxed-constexpr", "--fmad=false", "-cubin",
             f"-gencode=arch=compute_{ARCH},code=sm_{ARCH}", *tc.dali_cflags, f"-I{CSRC}", "-isystem",
             tc.dali_include, "-isystem", tc.cuda_include, "-Xptxas", "-v"]
    h = hashlib.sha256(json.dumps([tc.nvcc_version, tc.dali_version, flags]).encode())
    for p in [*sorted(CSRC.rglob("*")), SELFTEST]:
        if p.is_file():
            h.update(str(p.name).encode() + p.read_bytes())
    cached = harness.cache_dir() / f"ptxas-{h.hexdigest()[:20]}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        # The self-test kernels are plain CUDA too; only their host-side interface header is cudasim's.
        (Path(tmp) / "cudasim").mkdir()
        (Path(tmp) / "cudasim" / "selftest.h").write_bytes((harness.SIM / "include/cudasim/selftest.h").read_bytes())
        for src in [*kernel_sources(), SELFTEST]:
            r = subprocess.run([tc.nvcc, *flags, f"-I{tmp}", str(src), "-o", str(Path(tmp) / "k.cubin")],
                               capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, r.stderr[-4000:]
            entries = []
            for block in re.split(r"ptxas info\s*: Compiling entry function ", r.stderr)[1:]:
                used = re.search(r"Used (\d+) registers.*?(?:, (\d+) bytes smem)?$", block, re.M)
                entries.append({"entry": re.match(r"'([^']+)'", block).group(1), "registers": int(used.group(1)),
                                "smem": int(used.group(2) or 0)})
            report["selftest" if src == SELFTEST else str(src.relative_to(CSRC))] = entries
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(report, indent=1))
    return report


@pytest.fixture(scope="module")
def simulated_kernels(cudasim_driver, tmp_path_factory):
    """cudasim's view of every kernel instantiation (all dtype pairs, both z[] placements, lookup)."""
    bank = tmp_path_factory.mktemp("nvcc_bank") / "bank"
    write_bank(bank, n=2, h=3, w=3, k=2)
    s = Session()
    for i, dtypes in enumerate(SCORE_CLASS_DTYPES):
        for placement, c in (("shared", 100), ("global", 30000)):  # z[] fits in shared memory / does not
            ops.label_pool(s, f"{placement}{i}", "gpu", *[x[:1] for x in make_batch(i, 3, 3, 2, c, *dtypes)],
                           num_classes=c)
    ops.lookup(s, "lookup", "gpu", bank, [1, 0])
    s.kernels()
    out = s.execute(cudasim_driver)
    for r in out.results.values():
        r.expect_ok()
    launches = [launch for r in out.results.values() for launch in r.launches]
    return out.kernels, launches


def base_name(name: str) -> str:
    return re.search(r"(\w+)(?: \[with .*)?$", name).group(1)


def test_static_shared_memory_and_registers_are_what_the_launch_code_assumes(simulated_kernels):
    kernels, launches = simulated_kernels
    report = ptxas_report()
    entries = [e for es in report.values() for e in es]
    sim = {}
    for name, static, _, bounds, _ in kernels:
        sim.setdefault(base_name(name), set()).add((static, bounds))
    assert set(sim) == {"LabelPoolKernel", "GatherKernel"}, sim
    for kernel, values in sim.items():
        compiled = [e for e in entries if kernel in e["entry"]]
        assert compiled, f"ptxas reported no {kernel}"
        # Every instantiation: the simulator's static shared memory is ptxas's (so the simulated
        # launch limits are the GPU's), and a launch's block fits the register file.
        assert {e["smem"] for e in compiled} == {static for static, _ in values}, (kernel, compiled, values)
        block = max(launch.block[0] * launch.block[1] * launch.block[2] for launch in launches
                    if kernel in launch.kernel)
        assert {bounds for _, bounds in values} == {block}  # __launch_bounds__ is the launched block size
        for e in compiled:
            assert e["registers"] * block <= REGISTERS_PER_BLOCK and e["registers"] <= 255, e
    # The number the boundary tests and label_pool_cuda.cu's comment use.
    assert {e["smem"] for e in entries if "LabelPoolKernel" in e["entry"]} == {ops.LABEL_POOL_STATIC_SHARED}


def test_the_simulators_shared_memory_layout_is_ptxas_on_the_self_test_kernels(cudasim_driver):
    """The layout model (declaration order, natural alignment, cub's TempStorage size, 16-byte padding
    in modules with dynamic shared memory) on kernels other than the project's."""
    s = Session()
    for i, test in enumerate([("atomics",), ("uninitialized_shared",), ("shared_overrun", 100, 99), ("attributes",),
                              ("block_sum", 256), ("racy_counter",), ("barrier_after_return", 128)]):
        s.selftest(f"t{i}", *test)
    s.kernels()
    out = s.execute(cudasim_driver)
    sim = {base_name(name): static for name, static, *_ in out.kernels}
    compiled = ptxas_report()["selftest"]
    compared = 0
    for kernel, static in sim.items():
        if kernel == "UninitializedSharedKernel":
            continue  # it reads shared memory nothing wrote (undefined): nvcc drops those variables
        (entry,) = [e for e in compiled if re.search(rf"\d{kernel}E", e["entry"])]
        assert entry["smem"] == static, (kernel, entry, static)
        compared += 1
    assert compared >= 6 and sim["LayoutKernel"] == 32 and sim["BlockSumKernel"] == 48


def test_every_kernel_is_simulated(simulated_kernels):
    kernels, _ = simulated_kernels
    report = ptxas_report()
    simulated = {base_name(k[0]) for k in kernels}
    for source, entries in report.items():
        if source == "selftest":
            continue
        for e in entries:
            assert any(name in e["entry"] for name in simulated), f"{e['entry']} ({source}) never ran in cudasim"
