"""The DALI operators ``fn.relabel.*``: their C++/CUDA sources, build and loading.

Modules:
    csrc/: the operators (``label_pool``, ``lookup``, ``check_image``); one folder per operator with
        ``cpu/`` and ``cuda/`` backends and a shared ``__host__ __device__`` math header.
    sources: which sources make which library; the operator names their schemas define.
    toolchain: the installed DALI, the compilers, the CUDA headers, the target archs (environment variables).
    gpus: the visible GPUs' compute capabilities (asked in a child process: CUDA stays uninitialized here).
    build: compiles ``libdali_relabel.so`` (CPU) and, when asked, ``libdali_relabel_cuda.so`` (GPU), once per
        DALI version, toolchain and source (cached); progress: what a build prints while it runs.
    plugin: :func:`load_plugin` builds and loads the libraries, which register ``fn.relabel.*``.
    namespace: ``fn.relabel`` / ``ops.relabel`` / ``ndd.relabel`` before loading: first use loads the plugin.
    gpu_guard: GPU use of an operator (``fn.relabel.*``, ``ops.relabel.*``) while only the CPU library is loaded
        loads the CUDA library first.
    eager: runs the operators on tensors outside a pipeline (DALI's dynamic mode).
    image_check: finds the images DALI cannot decode (``fn.relabel.check_image`` + the CPU decoder).

Importing this package is cheap (standard library only); the names below are resolved on first access.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "BuildError": "dali_relabel.ops.toolchain",
    "load_plugin": "dali_relabel.ops.plugin",
    "loaded_plugin": "dali_relabel.ops.plugin",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
