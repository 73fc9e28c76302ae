"""The DALI operators ``fn.relabel.*``: their C++/CUDA sources, build and loading.

Modules:
    csrc/: the operators (``label_pool``, ``lookup``, ``check_image``); one folder per operator with
        ``cpu/`` and ``cuda/`` backends and a shared ``__host__ __device__`` math header.
    build: compiles ``csrc/`` against the installed DALI, once per DALI version and source (cached).
    plugin: :func:`load_plugin` builds and loads the plugin, which registers ``fn.relabel.*``.
    eager: runs the operators on tensors outside a pipeline (DALI's dynamic mode).
    image_check: finds the images DALI cannot decode (``fn.relabel.check_image`` + the CPU decoder).
"""

from .build import BuildError
from .plugin import load_plugin, loaded_plugin

__all__ = ["BuildError", "load_plugin", "loaded_plugin"]
