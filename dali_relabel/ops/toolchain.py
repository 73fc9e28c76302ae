"""What the plugin is compiled with: the installed DALI, the C++ compiler, nvcc, the CUDA headers, target archs.

Environment variables (documented in ``dali-relabel build --help``):
    DALI_RELABEL_NVCC: path of nvcc (default: ``$CUDA_HOME/bin/nvcc``, ``nvcc`` on PATH,
        ``/usr/local/cuda/bin/nvcc``). ``none`` disables the CUDA library.
    DALI_RELABEL_CUDA_ARCHS: comma-separated SM versions, e.g. ``90`` or ``75,80,86,90``
        (default: those of the visible GPUs, else 75,80,90; PTX of the highest is embedded for newer GPUs).
    CXX: the C++ compiler (default ``c++``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess

ENV_NVCC = "DALI_RELABEL_NVCC"
ENV_ARCHS = "DALI_RELABEL_CUDA_ARCHS"
# Every SM version CUDA 13 compiles for that DALI's CUDA 12 wheels support, oldest first: sm_75 (Turing),
# sm_80 (Ampere; also runs on sm_86/89 GPUs), sm_90 (Hopper). PTX of the highest is added for newer GPUs.
SUPPORTED_ARCHS = (75, 80, 90)
MIN_ARCH = 75
NVCC_OFF = ("none", "0", "off", "no")


class BuildError(RuntimeError):
    """The plugin could not be compiled; the message says why (compiler output included) and what to do."""


def no_cuda_message(reason: str) -> str:
    """The one explanation given wherever the CUDA library is needed but cannot be built."""
    return (f"the dali_relabel operators' CUDA backend cannot be built: {reason}. Install the CUDA toolkit (nvcc, "
            f"CUDA >= 12) and set CUDA_HOME or {ENV_NVCC}=/path/to/nvcc, then run `dali-relabel build --cuda`; "
            f"or use device='cpu'.")


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """What the plugin is compiled with. Its fields (not the paths) go into the cache keys."""

    dali_version: str
    dali_include: str
    dali_lib_dir: str
    dali_cflags: tuple[str, ...]
    cxx: str
    cxx_version: str
    cuda_include: str
    cudart_version: str          # of the headers in cuda_include (the CPU objects include them too)
    nvcc: str | None
    nvcc_version: str | None
    archs: tuple[int, ...]       # CUDA library targets; () without CUDA

    @property
    def with_cuda(self) -> bool:
        return self.nvcc is not None and bool(self.archs)


def _run_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"could not run {' '.join(cmd)!r}: {e}") from e
    return out.strip()


def nvcc_disabled() -> bool:
    return os.environ.get(ENV_NVCC, "").lower() in NVCC_OFF


def find_nvcc() -> str | None:
    """Locates nvcc, or None when there is none (or DALI_RELABEL_NVCC=none)."""
    env = os.environ.get(ENV_NVCC)
    if env:
        if nvcc_disabled():
            return None
        if not os.access(env, os.X_OK):
            raise BuildError(f"{ENV_NVCC}={env!r} is not an executable; unset it or point it at nvcc")
        return env
    candidates = [os.path.join(os.environ[var], "bin", "nvcc") for var in ("CUDA_HOME", "CUDA_PATH")
                  if os.environ.get(var)]
    which = shutil.which("nvcc")
    if which:
        candidates.append(which)
    candidates.append("/usr/local/cuda/bin/nvcc")
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def missing_nvcc_reason() -> str:
    """Why :func:`find_nvcc` found nothing, in words for :func:`no_cuda_message`."""
    if nvcc_disabled():
        return f"{ENV_NVCC}={os.environ[ENV_NVCC]} disables it"
    return "no nvcc was found (CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda)"


def _nvcc_include_dir(nvcc: str) -> str | None:
    # nvcc may be a wrapper script, so ask it where its headers are instead of guessing from
    # its location: a dry run prints the INCLUDES it would pass to the host compiler.
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        m = re.search(r'INCLUDES="?-I([^" ]+)', line)
        if m and os.path.isfile(os.path.join(m.group(1), "cuda_runtime.h")):
            return os.path.normpath(m.group(1))
    return None


def _complete_cuda_include(path: str | None) -> bool:
    # cuda_runtime.h alone is not enough: it includes crt/host_config.h, which the
    # nvidia-cuda-runtime wheel lacks (it comes with nvcc or the nvidia-cuda-crt wheel).
    return bool(path) and all(os.path.isfile(os.path.join(path, h)) for h in ("cuda_runtime.h", "crt/host_config.h"))


def find_cuda_include(nvcc: str | None) -> str:
    """Directory holding the CUDA runtime headers: DALI's headers include them even for CPU code."""
    candidates: list[str | None] = []
    if nvcc:
        candidates.append(_nvcc_include_dir(nvcc))
        candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include"))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "include"))
    candidates.append("/usr/local/cuda/include")
    # CUDA wheels (torch pulls in nvidia-cuda-runtime) may hold them too.
    try:
        import nvidia  # namespace package

        for base in nvidia.__path__:
            for sub in ("cu13", "cu12", "cuda_runtime"):
                candidates.append(os.path.join(base, sub, "include"))
    except ImportError:
        pass
    for c in candidates:
        if _complete_cuda_include(c):
            return c
    raise BuildError(
        "CUDA runtime headers (cuda_runtime.h, crt/host_config.h) not found; DALI's plugin headers need them even "
        "for the CPU backend. Install the CUDA toolkit and set CUDA_HOME, or "
        "`pip install nvidia-cuda-runtime nvidia-cuda-crt` (matching your CUDA major version).")


def _cudart_version(include: str) -> str:
    m = re.search(r"#define\s+CUDART_VERSION\s+(\d+)",
                  open(os.path.join(include, "cuda_runtime_api.h"), errors="replace").read())
    return m.group(1) if m else "unknown"


def parse_archs(text: str) -> tuple[int, ...]:
    """``"sm_80, 90"`` → ``(80, 90)``; raises BuildError naming DALI_RELABEL_CUDA_ARCHS on bad input."""
    try:
        archs = tuple(sorted({int(a.strip().replace("sm_", "").replace(".", "")) for a in text.split(",")
                              if a.strip()}))
    except ValueError:
        raise BuildError(f"{ENV_ARCHS}={text!r}: expected comma-separated SM numbers such as '80,90'") from None
    if not archs or min(archs) < MIN_ARCH:
        raise BuildError(f"{ENV_ARCHS}={text!r}: CUDA 13 supports sm_{MIN_ARCH} and newer")
    return archs


def target_archs(visible: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The SM versions to compile the CUDA library for.

    ``DALI_RELABEL_CUDA_ARCHS`` if set; else the visible GPUs' (a GPU older than sm_75 cannot be targeted and
    is left out); else, with no GPU to look at, every supported arch.
    """
    env = os.environ.get(ENV_ARCHS)
    if env:
        return parse_archs(env)
    usable = tuple(sorted({a for a in visible if a >= MIN_ARCH}))
    return usable or SUPPORTED_ARCHS


def toolchain(*, cuda: bool = False, archs: tuple[int, ...] | None = None) -> Toolchain:
    """Inspects the installed DALI and the compilers.

    Args:
        cuda: also the CUDA toolchain: nvcc is required (BuildError with instructions if there is none).
        archs: CUDA targets (default :func:`target_archs` of no visible GPU: the env setting or all supported).

    Raises:
        BuildError: no C++ compiler, no CUDA headers, (with ``cuda``) no nvcc or bad archs.
    """
    import nvidia.dali as dali
    from nvidia.dali import sysconfig

    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise BuildError("no C++ compiler found: install g++ (e.g. `apt install g++`) or set CXX")
    nvcc = find_nvcc()
    if cuda and nvcc is None:
        raise BuildError(no_cuda_message(missing_nvcc_reason()))
    if cuda:
        archs = target_archs() if archs is None else tuple(sorted(set(archs)))
        if not archs or min(archs) < MIN_ARCH:
            raise BuildError(f"CUDA archs {archs}: CUDA 13 supports sm_{MIN_ARCH} and newer")
    cuda_include = find_cuda_include(nvcc)
    return Toolchain(
        dali_version=dali.__version__,
        dali_include=sysconfig.get_include_dir(),
        dali_lib_dir=sysconfig.get_lib_dir(),
        dali_cflags=tuple(f for f in sysconfig.get_compile_flags() if not f.startswith("-I")),
        cxx=cxx,
        cxx_version=_run_version([cxx, "--version"]).splitlines()[0],
        cuda_include=cuda_include,
        cudart_version=_cudart_version(cuda_include),
        nvcc=nvcc if cuda else None,
        nvcc_version=_run_version([nvcc, "--version"]).splitlines()[-1] if cuda else None,
        archs=archs if cuda else (),
    )


__all__ = ["BuildError", "ENV_ARCHS", "ENV_NVCC", "SUPPORTED_ARCHS", "Toolchain", "find_cuda_include", "find_nvcc",
           "missing_nvcc_reason", "no_cuda_message", "nvcc_disabled", "parse_archs", "target_archs", "toolchain"]
