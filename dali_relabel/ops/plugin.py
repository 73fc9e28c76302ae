"""Loads the dali_relabel plugin into DALI: ``fn.relabel.*``, ``ops.relabel.*``, ``ndd.relabel.*``.

When: on the first use of an operator after ``import dali_relabel`` (:mod:`dali_relabel.ops.namespace`), or
by an explicit :func:`load_plugin`. What:

* the CPU library (schemas + CPU operators), always;
* the CUDA library (GPU operators), at the same time when a GPU is visible and nvcc is found (compiled for
  the visible GPUs' archs); otherwise when the GPU is first asked for: GPU use of an operator
  (:mod:`dali_relabel.ops.gpu_guard`), ``load_plugin(cuda=True)`` (``BankPooling`` on CUDA does this),
  ``dali-relabel build --cuda``.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import warnings

from .build import BuildError, BuiltPlugin, build
from .toolchain import find_nvcc, missing_nvcc_reason, no_cuda_message, target_archs

_lock = threading.RLock()
_thread = threading.local()
_loaded: BuiltPlugin | None = None


def loading_in_this_thread() -> bool:
    """True while this thread is inside :func:`load_plugin` (DALI is then filling the ``relabel`` namespaces)."""
    return getattr(_thread, "loading", False)


def load_plugin(cuda: bool | None = None, verbose: bool = True) -> BuiltPlugin:
    """Builds (once, cached) and loads the plugin. Idempotent and thread-safe.

    Args:
        cuda: ``None``: the CPU library, plus the CUDA library if a GPU is visible and nvcc is found.
            ``True``: the CUDA library too, whatever the GPUs (for the visible GPUs' archs, else every supported
            arch; ``DALI_RELABEL_CUDA_ARCHS`` overrides). ``False``: the CPU library only. A library once loaded
            stays loaded.
        verbose: print the build's steps (first use only) and warnings to stderr.

    Returns:
        The loaded plugin's description (libraries, DALI version, CUDA archs).

    Raises:
        BuildError: the plugin could not be compiled; with ``cuda=True``, also when there is no nvcc. The message
            says why and what to install.
    """
    with _lock:
        if _loaded is not None and (not cuda or _loaded.with_cuda):
            return _loaded
        _thread.loading = True
        try:
            _load(cuda, verbose)
        finally:
            _thread.loading = False
        return _loaded


def cuda_by_default() -> bool:
    """Whether first use also loads the CUDA library: a GPU is visible and nvcc is found."""
    from .gpus import visible_archs

    return bool(visible_archs()) and find_nvcc() is not None


def _load(cuda: bool | None, verbose: bool) -> None:
    before = _loaded
    try:
        _load_libraries(cuda, verbose)
    finally:  # also when the CUDA build failed after the CPU library was loaded
        if _loaded is not before:
            _after_load(_loaded)


def _load_libraries(cuda: bool | None, verbose: bool) -> None:
    global _loaded
    from nvidia.dali import plugin_manager

    from .gpus import visible_archs

    if _loaded is None:
        plugin = build(verbose=verbose)
        plugin_manager.load_library(str(plugin.cpu.path))
        _loaded = plugin
    if cuda is False:
        return
    visible = visible_archs()
    if cuda is None:
        if not visible:
            return  # CUDA when the GPU is asked for (gpu_guard)
        if find_nvcc() is None:
            if verbose:
                print(f"dali_relabel: warning: a GPU is visible but {no_cuda_message(missing_nvcc_reason())}",
                      file=sys.stderr)
            return
    try:
        cuda_lib = build(cuda=True, archs=target_archs(visible), verbose=verbose).cuda
    except BuildError as e:
        if cuda:
            raise
        # First use on a GPU machine: the CPU operators work; GPU use retries the build and raises this.
        print(f"dali_relabel: warning: the CUDA library could not be built, GPU use will fail: {e}",
              file=sys.stderr)
        return
    # Its GPU registrations attach to the schemas the CPU library registered: DALI's op modules already
    # hold the operators and instantiate the new backend when a pipeline asks for it.
    plugin_manager.load_library(str(cuda_lib.path))
    _loaded = dataclasses.replace(_loaded, cuda=cuda_lib)


def _after_load(plugin: BuiltPlugin) -> None:
    from nvidia.dali import ops

    from . import gpu_guard

    if plugin.with_cuda:
        gpu_guard.unguard(ops.relabel)
    else:
        gpu_guard.guard(ops.relabel, load_cuda=lambda: load_plugin(cuda=True))
    ndd = sys.modules.get("nvidia.dali.experimental.dynamic")
    if ndd is not None:
        try:
            rebuild_dynamic_operator_table(ndd)
        except RuntimeError as e:  # the pipeline API works regardless; dynamic mode reports it when used
            warnings.warn(str(e), RuntimeWarning, stacklevel=3)


def rebuild_dynamic_operator_table(ndd) -> None:
    """Makes DALI's dynamic mode (``ndd``) see the operators (and backends) loaded after it was imported.

    Dynamic mode builds its operator table once, when imported, from the operators registered at that
    moment, and freezes each operator's backends; ``plugin_manager.load_library`` refreshes only the pipeline
    API. DALI 2.4 has no public way to refresh it, so this calls the private function its ``__init__`` calls
    (``nvidia.dali.experimental.dynamic._ops._initialize``): the package's only private DALI call.
    ``tests/ops/test_plugin.py`` fails, saying so, if DALI renames it.

    Raises:
        RuntimeError: DALI no longer has that function (the message says what to do).
    """
    initialize = getattr(getattr(ndd, "_ops", None), "_initialize", None)
    if not callable(initialize):
        raise RuntimeError(
            f"dali_relabel: this DALI ({getattr(sys.modules.get('nvidia.dali'), '__version__', '?')}) no longer has "
            "nvidia.dali.experimental.dynamic._ops._initialize, which dali_relabel calls to add its operators to "
            "dynamic mode when that was imported before the plugin loaded. Import dali_relabel and call "
            "dali_relabel.load_plugin() before importing nvidia.dali.experimental.dynamic, and report this.")
    initialize()


def loaded_plugin() -> BuiltPlugin | None:
    """The plugin loaded in this process, if any."""
    return _loaded


__all__ = ["BuildError", "load_plugin", "loaded_plugin", "loading_in_this_thread", "rebuild_dynamic_operator_table"]
