"""dali-relabel build: compile the DALI plugin now and say what was built."""

from __future__ import annotations

import argparse
import sys

HELP = "compile the DALI plugin now (normally done on first use of an operator) and print what was built"

EPILOG = """\
what is built:
  libdali_relabel.so       schemas and CPU operators (C++ compiler; ~30 CPU-seconds)
  libdali_relabel_cuda.so  GPU operators (nvcc; ~65 CPU-seconds for one arch, ~105 for all): built with the
                           first when a GPU is visible (for its architecture), else on first GPU use or with
                           --cuda (every supported arch)
Both are compiled against the installed DALI, once per DALI version, compiler and source, and cached.

environment variables:
  DALI_RELABEL_CACHE       cache root (default $XDG_CACHE_HOME/dali_relabel or ~/.cache/dali_relabel)
  DALI_RELABEL_NVCC        path of nvcc (default $CUDA_HOME/bin/nvcc, nvcc on PATH, /usr/local/cuda/bin/nvcc);
                           'none': never build the CUDA library (CPU operators only)
  DALI_RELABEL_CUDA_ARCHS  SM versions of the CUDA library, e.g. '90' or '80,86,90' (default: those of the
                           visible GPUs, else 75,80,90); PTX of the highest is embedded for newer GPUs
  CXX                      the C++ compiler (default c++)
  CUDA_HOME, CUDA_PATH     where to look for nvcc and the CUDA headers
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--cuda", action="store_true",
                   help="also build the CUDA library, even with no GPU visible (fails without nvcc)")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if cached (rebuilding the CPU library drops the CUDA libraries built on it)")


def run(args: argparse.Namespace) -> int:
    from ..fs import cache_root
    from ..ops.build import build
    from ..ops.gpus import visible_archs
    from ..ops.plugin import cuda_by_default
    from ..ops.toolchain import BuildError, target_archs

    try:
        cuda = args.cuda or cuda_by_default()
        plugin = build(cuda=cuda, archs=target_archs(visible_archs()) if cuda else None, force=args.force)
    except BuildError as e:
        print(f"dali-relabel build: error: {e}", file=sys.stderr)
        return 2
    print(plugin.describe())
    print(f"cache root: {cache_root()} (set DALI_RELABEL_CACHE to move it)")
    return 0
