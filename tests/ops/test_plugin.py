"""Loading the plugin: on first use of an operator whatever the import order, DALI's op modules intact, the CUDA
library on GPU use, dynamic mode, the one private DALI call. Each case runs in a fresh process."""

from __future__ import annotations

import os

import pytest
from store_util import run_python

import dali_relabel
from dali_relabel.ops import toolchain

# One label_pool pipeline on the CPU, checking the value (e / (e + 1)), so each child proves the operator ran.
# `{pool}` is how the child calls the operator (functional or class API).
LABEL_POOL_PIPELINE = """
import numpy as np
from nvidia.dali import fn, pipeline_def

@pipeline_def(batch_size=1, num_threads=1, device_id=None)
def pipe():
    s = fn.external_source(lambda: [np.ones((2, 2, 1), np.float32)], batch=True)
    c = fn.external_source(lambda: [np.zeros((2, 2, 1), np.int32)], batch=True)
    return {pool}(s, c, rel_start=[0.0, 0.0], rel_end=[1.0, 1.0])

p = pipe()
p.build()
value = float(np.array(p.run()[0][0])[0])
assert abs(value - np.e / (np.e + 1)) < 1e-6, value
"""
RUN_LABEL_POOL = LABEL_POOL_PIPELINE.format(pool="functools.partial(fn.relabel.label_pool, num_classes=2)")
RUN_LABEL_POOL = "import functools\n" + RUN_LABEL_POOL


def run(code: str, **env) -> str:
    """Runs code in a fresh interpreter with extra environment variables; returns its stderr (it must succeed)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_python(code, timeout=300).stderr
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("imports", [
    "import dali_relabel, sys\nassert 'nvidia.dali' not in sys.modules\nfrom nvidia.dali import fn\n",
    "from nvidia.dali import fn\nimport dali_relabel\n",
], ids=["dali_relabel-first", "dali-first"])
def test_first_use_of_fn_relabel_loads_the_plugin(imports):
    run(imports + """
import sys
assert dali_relabel.loaded_plugin() is None
assert "relabel" in dir(fn) and "label_pool" in dir(fn.relabel)   # listing builds nothing
assert dali_relabel.loaded_plugin() is None
""" + RUN_LABEL_POOL + """
plugin = dali_relabel.loaded_plugin()
assert plugin is not None and plugin.path.is_file()
# DALI filled the namespace as one of its own op modules: its function, its module name, importable.
import inspect
import nvidia.dali.fn.relabel as by_import
assert by_import is fn.relabel and sys.modules["nvidia.dali.fn.relabel"] is fn.relabel
op = fn.relabel.label_pool
assert op.__module__ == "nvidia.dali.fn.relabel" and not hasattr(op, "__wrapped__"), op.__module__
assert "num_classes" in inspect.signature(op).parameters and "label_type" in op.__doc__
from nvidia.dali import ops
assert ops.relabel.LabelPool.__module__ == "nvidia.dali.ops.relabel" and callable(fn.relabel.lookup)
# DALI's module loaders are untouched, and the import hook is gone once every DALI API module is imported.
import nvidia.dali.experimental.dynamic
for name in ("nvidia.dali.fn", "nvidia.dali.ops", "nvidia.dali.experimental.dynamic"):
    m = sys.modules[name]
    assert "dali_relabel" not in type(m.__loader__).__module__ and m.__spec__.loader is m.__loader__, name
assert not [f for f in sys.meta_path if "dali_relabel" in type(f).__module__], sys.meta_path
""")


def test_other_names_build_nothing(tmp_path):
    """Only the operators' names load the plugin: probing (hasattr, dunders, typos) builds and loads nothing."""
    stderr = run("""
import dali_relabel
from nvidia.dali import fn, ops
assert not hasattr(fn.relabel, "__path__") and not hasattr(ops.relabel, "label_pool")
try:
    fn.relabel.label_pol
except AttributeError as e:
    assert "has no attribute 'label_pol' (dali_relabel operators: check_image, label_pool, lookup)" in str(e), e
else:
    raise AssertionError("no AttributeError")
assert dali_relabel.loaded_plugin() is None
""", DALI_RELABEL_CACHE=str(tmp_path / "cache"))
    assert "compiling" not in stderr and not (tmp_path / "cache").exists()


def test_first_use_of_the_class_api_loads_the_plugin():
    run("""
import dali_relabel
from nvidia.dali import ops

pool = ops.relabel.LabelPool(num_classes=2)
assert dali_relabel.loaded_plugin() is not None
""" + LABEL_POOL_PIPELINE.format(pool="pool"))


@pytest.mark.parametrize("imports", [
    "import dali_relabel\nimport nvidia.dali.experimental.dynamic as ndd\n",
    "import nvidia.dali.experimental.dynamic as ndd\nimport dali_relabel\n",
], ids=["dali_relabel-first", "dynamic-first"])
def test_first_use_in_dynamic_mode_loads_the_plugin(imports):
    run(imports + """
import numpy as np
assert dali_relabel.loaded_plugin() is None
s, c = np.ones((1, 2, 2, 1), np.float32), np.zeros((1, 2, 2, 1), np.int32)
out = ndd.relabel.label_pool(ndd.as_batch(s), ndd.as_batch(c), rel_start=ndd.as_batch(np.zeros((1, 2), np.float32)),
                             rel_end=ndd.as_batch(np.ones((1, 2), np.float32)), num_classes=2)
assert dali_relabel.loaded_plugin() is not None
value = float(np.asarray(out.torch())[0, 0])
assert abs(value - np.e / (np.e + 1)) < 1e-6, value
""")


def test_the_private_dynamic_mode_call_still_exists():
    """dali_relabel's one private DALI call: if this fails, DALI changed how dynamic mode builds its operator table.

    ``plugin.rebuild_dynamic_operator_table`` calls ``nvidia.dali.experimental.dynamic._ops._initialize()`` to add
    operators loaded after dynamic mode was imported (DALI 2.4 has no public way). Find DALI's new way and update
    that one function.
    """
    import nvidia.dali.experimental.dynamic as ndd

    initialize = getattr(getattr(ndd, "_ops", None), "_initialize", None)
    assert callable(initialize), (
        "DALI changed its dynamic mode: nvidia.dali.experimental.dynamic._ops._initialize is gone; update "
        "dali_relabel.ops.plugin.rebuild_dynamic_operator_table")
    from dali_relabel.ops.plugin import rebuild_dynamic_operator_table

    dali_relabel.load_plugin()
    before = ndd.relabel.label_pool
    rebuild_dynamic_operator_table(ndd)
    after = ndd.relabel.label_pool
    assert after is not before and after._schema_name == "relabel__LabelPool", (
        "DALI changed its dynamic mode: _ops._initialize() no longer rebuilds the operator functions; update "
        "dali_relabel.ops.plugin.rebuild_dynamic_operator_table")


def test_a_changed_private_call_is_reported_by_name():
    import types

    from dali_relabel.ops.plugin import rebuild_dynamic_operator_table

    with pytest.raises(RuntimeError, match=r"no longer has nvidia.dali.experimental.dynamic._ops._initialize.*"
                                           r"call dali_relabel.load_plugin\(\) before importing"):
        rebuild_dynamic_operator_table(types.SimpleNamespace(_ops=types.SimpleNamespace()))


NO_GPU = """
import dali_relabel.ops.gpus
dali_relabel.ops.gpus.visible_archs = lambda: ()  # as on a machine without a GPU, wherever the test runs
"""
GPU_USE = """
from nvidia.dali import fn, ops, pipeline_def
import dali_relabel
from dali_relabel.ops.gpu_guard import is_guarded

@pipeline_def(batch_size=1, num_threads=1, device_id=None)
def gpu_pipe():
    return fn.relabel.label_pool(fn.external_source(name="s").gpu(), fn.external_source(name="c").gpu(),
                                 rel_start=[0.0, 0.0], rel_end=[1.0, 1.0], num_classes=2)
"""


def test_gpu_use_without_nvcc_fails_with_instructions():
    """No GPU visible, no nvcc: the CPU operators work; a GPU operator raises BuildError saying how to get nvcc."""
    stderr = run(NO_GPU + GPU_USE + RUN_LABEL_POOL + """
plugin = dali_relabel.loaded_plugin()
assert not plugin.with_cuda and is_guarded(ops.relabel.LabelPool) and is_guarded(ops.relabel.Lookup)
assert not is_guarded(ops.relabel.CheckImage)  # no GPU backend: DALI's own error
try:
    gpu_pipe()
except dali_relabel.BuildError as e:
    print("GPU-ERROR:", e, flush=True)
else:
    raise AssertionError("GPU use did not fail")
for make in (lambda: fn.relabel.lookup(index=0, bank="/nonexistent", device="gpu"),
             lambda: ops.relabel.LabelPool(device="gpu", num_classes=2),
             lambda: ops.relabel.Lookup(device="mixed", bank="/nonexistent")):
    try:
        make()
    except dali_relabel.BuildError:
        pass
    else:
        raise AssertionError("GPU use did not fail")
import sys
print("GPU-ERROR-DONE", file=sys.stderr)
""", DALI_RELABEL_NVCC="none")
    assert "GPU-ERROR-DONE" in stderr
    # The CPU-only first use of a machine without a GPU is the normal case: no warning.
    assert "warning" not in stderr


def test_gpu_use_without_nvcc_message():
    with pytest.raises(toolchain.BuildError) as e:
        os.environ["DALI_RELABEL_NVCC"] = "none"
        try:
            toolchain.toolchain(cuda=True)
        finally:
            del os.environ["DALI_RELABEL_NVCC"]
    assert str(e.value) == (
        "the dali_relabel operators' CUDA backend cannot be built: DALI_RELABEL_NVCC=none disables it. Install the "
        "CUDA toolkit (nvcc, CUDA >= 12) and set CUDA_HOME or DALI_RELABEL_NVCC=/path/to/nvcc, then run "
        "`dali-relabel build --cuda`; or use device='cpu'.")


def test_visible_gpu_without_nvcc_warns_at_first_use():
    """A GPU is visible (simulated) but there is no nvcc: first use warns once and loads the CPU library."""
    stderr = run("""
import dali_relabel.ops.gpus as gpus
gpus.visible_archs = lambda: (90,)
""" + GPU_USE + RUN_LABEL_POOL + """
assert not dali_relabel.loaded_plugin().with_cuda
try:
    gpu_pipe()
except dali_relabel.BuildError as e:
    assert "DALI_RELABEL_NVCC=none disables it" in str(e)
else:
    raise AssertionError("GPU use did not fail")
""", DALI_RELABEL_NVCC="none")
    assert stderr.count("dali_relabel: warning: a GPU is visible but the dali_relabel operators' CUDA backend "
                        "cannot be built: DALI_RELABEL_NVCC=none disables it.") == 1, stderr


def test_operator_errors_point_at_the_users_line():
    """DALI reports an operator's runtime error with the stack where it was used: no dali_relabel frame in it."""
    stderr = run(NO_GPU + GPU_USE + """
import numpy as np, sys

@pipeline_def(batch_size=1, num_threads=1, device_id=None)
def pipe():
    s = fn.external_source(lambda: [np.ones((2, 2, 1), np.float32)], batch=True)
    c = fn.external_source(lambda: [np.full((2, 2, 1), 7, np.int32)], batch=True)
    return fn.relabel.label_pool(s, c, rel_start=[0.0, 0.0], rel_end=[1.0, 1.0], num_classes=2)

p = pipe()
p.build()
assert is_guarded(ops.relabel.LabelPool)  # the CPU-only state, where GPU use is guarded
try:
    p.run()
except ValueError as e:  # DALI raises the operator's std::invalid_argument as ValueError
    print(e, file=sys.stderr)
else:
    raise AssertionError("no error")
""", DALI_RELABEL_NVCC="none")
    trace = stderr[stderr.index("which was used in the pipeline definition"):stderr.index("encountered:")]
    import re

    assert re.findall(r'File "([^"]+)", line \d+, in (\w+)', trace) == [("<string>", "pipe")], trace
    assert "sample 0: class index 7 at (row 0, col 0, k 0) is outside [0, num_classes=2)" in stderr
