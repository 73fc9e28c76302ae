"""Loads the dali_relabel plugin into DALI, so that ``nvidia.dali.fn.relabel.*`` exists."""

from __future__ import annotations

import sys
import threading

from .build import BuildError, BuiltPlugin, build

_lock = threading.Lock()
_loaded: BuiltPlugin | None = None


def load_plugin(verbose: bool = True) -> BuiltPlugin:
    """Builds (once, cached) and loads the plugin. Idempotent and thread-safe.

    Returns:
        The loaded plugin's description (path, DALI version, CUDA or not).

    Raises:
        BuildError: the plugin could not be compiled (message says why and what to install).
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        from nvidia.dali import plugin_manager

        plugin = build(verbose=verbose)
        plugin_manager.load_library(str(plugin.path))
        if not plugin.with_cuda:
            if verbose:
                print("dali_relabel: warning: no nvcc found, plugin built without its CUDA backend "
                      "(device='gpu' unavailable); install the CUDA toolkit and run `dali-relabel build --force`",
                      file=sys.stderr)
            _guard_gpu_use()
        _loaded = plugin
        return plugin


NO_CUDA_MESSAGE = (
    "the dali_relabel plugin was built without its CUDA backend (no nvcc was found at build time), "
    "so fn.relabel.{op} cannot run on the GPU. Install the CUDA toolkit (nvcc) or set "
    "DALI_RELABEL_NVCC=/path/to/nvcc, then run `dali-relabel build --force`; or use device='cpu'.")


def _guard_gpu_use() -> None:
    """Makes GPU use of a CPU-only plugin fail at graph definition with instructions.

    Without this, DALI would only say that the operator has no GPU implementation.
    """
    import functools

    from nvidia.dali import fn

    for name in [n for n in dir(fn.relabel) if not n.startswith("_")]:
        op = getattr(fn.relabel, name)

        @functools.wraps(op)
        def guarded(*inputs, _op=op, _name=name, **kwargs):
            on_gpu = kwargs.get("device") in ("gpu", "mixed") or any(
                getattr(x, "device", None) == "gpu" for x in inputs)
            if on_gpu:
                raise RuntimeError(NO_CUDA_MESSAGE.format(op=_name))
            return _op(*inputs, **kwargs)

        setattr(fn.relabel, name, guarded)


def loaded_plugin() -> BuiltPlugin | None:
    """The plugin loaded in this process, if any."""
    return _loaded


__all__ = ["BuildError", "load_plugin", "loaded_plugin"]
