"""Builds the dali_relabel DALI plugin against the installed DALI and caches it.

A DALI plugin links against symbols versioned per DALI release (``DALI_2.4.0``), so a
prebuilt binary is not portable: we compile ``csrc/`` on the user's machine, once, and keep
the result under a cache directory keyed by everything that changes the binary (DALI
version, source contents, compilers, CUDA on/off, target archs). Concurrent first imports
(several ranks, several test workers) are safe: one process builds under a file lock into
a temporary directory that is renamed into place atomically; the others wait and reuse it.

Environment variables:
    DALI_RELABEL_CACHE: cache root (default ``$XDG_CACHE_HOME/dali_relabel`` or
        ``~/.cache/dali_relabel``).
    DALI_RELABEL_NVCC: path of nvcc (default: ``$CUDA_HOME/bin/nvcc``, ``nvcc`` on PATH,
        ``/usr/local/cuda/bin/nvcc``). Set to ``none`` to build the CPU backend only.
    DALI_RELABEL_CUDA_ARCHS: comma-separated SM versions, e.g. ``90`` or ``75,80,86,90``
        (default ``75,80,90``; PTX of the highest is embedded for newer GPUs).
    CXX: the C++ compiler (default ``c++``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..fs import build_once, cache_root

CSRC = Path(__file__).resolve().parent / "csrc"
LIB_NAME = "libdali_relabel.so"
DEFAULT_ARCHS = (75, 80, 90)
# Bump when the build recipe changes in a way the key below does not capture.
RECIPE_VERSION = 1


class BuildError(RuntimeError):
    """The plugin could not be compiled; the message holds the compiler's output."""


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """What the plugin is compiled with. Part of the cache key."""

    dali_version: str
    dali_include: str
    dali_lib_dir: str
    dali_cflags: tuple[str, ...]
    cxx: str
    cxx_version: str
    nvcc: str | None
    nvcc_version: str | None
    cuda_include: str
    archs: tuple[int, ...]

    @property
    def with_cuda(self) -> bool:
        return self.nvcc is not None


@dataclasses.dataclass(frozen=True)
class BuiltPlugin:
    """A built plugin in the cache and how it was built."""

    path: Path
    dali_version: str
    with_cuda: bool
    archs: tuple[int, ...]
    build_seconds: float | None  # None when it came from the cache

    def describe(self) -> str:
        backends = "CPU + CUDA (sm_" + ", sm_".join(map(str, self.archs)) + ")" if self.with_cuda else "CPU only"
        origin = f"built in {self.build_seconds:.1f} s" if self.build_seconds is not None else "cached"
        return f"dali_relabel plugin for DALI {self.dali_version}: {backends}; {origin}; {self.path}"


def _run_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"could not run {' '.join(cmd)!r}: {e}") from e
    return out.strip()


def find_nvcc() -> str | None:
    """Locates nvcc, or None when there is none (or DALI_RELABEL_NVCC=none)."""
    env = os.environ.get("DALI_RELABEL_NVCC")
    if env:
        if env.lower() in ("none", "0", "off", "no"):
            return None
        if not os.access(env, os.X_OK):
            raise BuildError(f"DALI_RELABEL_NVCC={env!r} is not an executable; unset it or point it at nvcc")
        return env
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    which = shutil.which("nvcc")
    if which:
        candidates.append(which)
    candidates.append("/usr/local/cuda/bin/nvcc")
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


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


def _parse_archs() -> tuple[int, ...]:
    env = os.environ.get("DALI_RELABEL_CUDA_ARCHS")
    if not env:
        return DEFAULT_ARCHS
    try:
        archs = tuple(sorted({int(a.strip().replace("sm_", "").replace(".", "")) for a in env.split(",") if a.strip()}))
    except ValueError:
        raise BuildError(f"DALI_RELABEL_CUDA_ARCHS={env!r}: expected comma-separated SM numbers such as '80,90'") from None
    if not archs or min(archs) < 75:
        raise BuildError(f"DALI_RELABEL_CUDA_ARCHS={env!r}: CUDA 13 supports sm_75 and newer")
    return archs


def toolchain() -> Toolchain:
    """Inspects the installed DALI and the compilers (raises BuildError if unusable)."""
    import nvidia.dali as dali
    from nvidia.dali import sysconfig

    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise BuildError("no C++ compiler found: install g++ (e.g. `apt install g++`) or set CXX")
    nvcc = find_nvcc()
    cflags = tuple(f for f in sysconfig.get_compile_flags() if not f.startswith("-I"))
    return Toolchain(
        dali_version=dali.__version__,
        dali_include=sysconfig.get_include_dir(),
        dali_lib_dir=sysconfig.get_lib_dir(),
        dali_cflags=cflags,
        cxx=cxx,
        cxx_version=_run_version([cxx, "--version"]).splitlines()[0],
        nvcc=nvcc,
        nvcc_version=_run_version([nvcc, "--version"]).splitlines()[-1] if nvcc else None,
        cuda_include=find_cuda_include(nvcc),
        archs=_parse_archs() if nvcc else (),
    )


def sources() -> tuple[list[Path], list[Path], list[Path]]:
    """(C++ sources, CUDA sources, headers) under csrc/, in a stable order."""
    cc = sorted(CSRC.rglob("*.cc"))
    cu = sorted(CSRC.rglob("*.cu"))
    h = sorted(CSRC.rglob("*.h"))
    return cc, cu, h


def cache_key(tc: Toolchain) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({
        "recipe": RECIPE_VERSION, "dali": tc.dali_version, "cflags": tc.dali_cflags,
        "cxx": tc.cxx_version, "nvcc": tc.nvcc_version, "archs": tc.archs,
    }, sort_keys=True).encode())
    cc, cu, hdr = sources()
    for p in (*cc, *cu, *hdr):
        h.update(str(p.relative_to(CSRC)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _compile_commands(tc: Toolchain, tmp: Path) -> tuple[list[list[str]], list[str], list[str]]:
    cc, cu, _ = sources()
    # DALI and CUDA as system headers: their own warnings are not ours to fix.
    includes = [f"-I{CSRC}", "-isystem", tc.dali_include, "-isystem", tc.cuda_include]
    defines = list(tc.dali_cflags)
    cmds, objects = [], []
    for i, src in enumerate(cc):
        obj = str(tmp / f"cc{i}_{src.stem}.o")
        cmds.append([tc.cxx, "-std=c++20", "-O3", "-fPIC", "-fvisibility=hidden", "-Wall",
                     "-Wno-unused-variable",  # DALI_SCHEMA defines a static it never reads
                     *defines, *includes, "-c", str(src), "-o", obj])
        objects.append(obj)
    gencode = []
    if tc.with_cuda:
        for a in tc.archs:
            gencode.append(f"-gencode=arch=compute_{a},code=sm_{a}")
        top = max(tc.archs)
        gencode.append(f"-gencode=arch=compute_{top},code=compute_{top}")  # PTX for newer GPUs
        for i, src in enumerate(cu):
            obj = str(tmp / f"cu{i}_{src.stem}.o")
            cmds.append([tc.nvcc, "-std=c++20", "-O3", "--compiler-options", "-fPIC,-fvisibility=hidden",
                         "--expt-relaxed-constexpr",
                         # No FMA contraction: the shared math header must round exactly as on
                         # the CPU (g++ does not contract for x86-64), so both backends agree.
                         "--fmad=false", *gencode, *defines, *includes,
                         "-c", str(src), "-o", obj])
            objects.append(obj)
    return cmds, objects, gencode


def _run_parallel(cmds: list[list[str]], jobs: int) -> None:
    pending = list(cmds)
    running: list[tuple[list[str], subprocess.Popen]] = []
    failures = []
    while pending or running:
        while pending and len(running) < jobs:
            cmd = pending.pop(0)
            running.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        cmd, proc = running.pop(0)
        out, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"$ {' '.join(cmd)}\n{out}")
    if failures:
        raise BuildError("compiling the dali_relabel plugin failed:\n" + "\n".join(failures))


def _compile(tc: Toolchain, tmp: Path) -> Path:
    cmds, objects, gencode = _compile_commands(tc, tmp)
    _run_parallel(cmds, jobs=max(1, min(len(cmds), os.cpu_count() or 1)))
    lib = tmp / LIB_NAME
    if tc.with_cuda:
        # Static cudart: the .so needs only libdali and libc/libstdc++, exports no cuda*
        # symbols, and still loads (CPU ops usable) on machines without a GPU or a driver.
        link = [tc.nvcc, "-shared", "-cudart", "static", *gencode, *objects,
                f"-L{tc.dali_lib_dir}", "-ldali", f"-Xlinker=-rpath={tc.dali_lib_dir}", "-o", str(lib)]
    else:
        link = [tc.cxx, "-shared", *objects, f"-L{tc.dali_lib_dir}", "-ldali",
                f"-Wl,-rpath,{tc.dali_lib_dir}", "-o", str(lib)]
    _run_parallel([link], jobs=1)
    return lib


def build(force: bool = False, verbose: bool = True) -> BuiltPlugin:
    """Returns the cached plugin for this DALI/toolchain/source combination, building it if needed.

    Args:
        force: rebuild even if a cached build exists.
        verbose: print a line to stderr when compiling (it takes ~20-40 s, once).

    Raises:
        BuildError: no usable compiler, missing headers, or a compile error (output included).
    """
    tc = toolchain()
    key = cache_key(tc)
    root = cache_root() / f"dali-{tc.dali_version}"
    final = root / key
    lib = final / LIB_NAME
    meta = {"dali_version": tc.dali_version, "with_cuda": tc.with_cuda, "archs": list(tc.archs)}
    t0 = time.perf_counter()

    def fill(tmp: Path) -> None:
        if verbose:
            what = f"CPU + CUDA sm_{','.join(map(str, tc.archs))}" if tc.with_cuda else "CPU only (no nvcc found)"
            print(f"dali_relabel: compiling the DALI plugin for DALI {tc.dali_version} ({what}); "
                  f"once, cached in {root}", file=sys.stderr, flush=True)
        _compile(tc, tmp)
        for obj in tmp.glob("*.o"):
            obj.unlink()
        (tmp / "build.json").write_text(json.dumps({**meta, "toolchain": dataclasses.asdict(tc)}, indent=1))

    # Several processes (ranks, test workers) may ask at once: one compiles, the others wait and reuse it.
    built = build_once(final, fill, complete=lambda d: (d / LIB_NAME).is_file(), lock=root / f"{key}.lock",
                       force=force)
    return BuiltPlugin(lib, tc.dali_version, tc.with_cuda, tc.archs, time.perf_counter() - t0 if built else None)
