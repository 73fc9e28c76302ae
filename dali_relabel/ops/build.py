"""Builds the dali_relabel DALI plugin against the installed DALI and caches it: CPU first, CUDA when asked.

A DALI plugin links against symbols versioned per DALI release (``DALI_2.4.0``), so a prebuilt binary is
not portable: ``csrc/`` is compiled on the user's machine, once, and kept under a cache directory keyed by
everything that changes the binary. The plugin is two libraries, so that the slow CUDA part is compiled
only where it is wanted, and after the CPU part is already in use:

    <cache>/dali-<version>/<cpu key>/libdali_relabel.so
        every operator schema, the CPU operators, host code shared by both backends (``*.cc``; g++, seconds).
    <cache>/dali-<version>/<cpu key>/cuda-<cuda key>/libdali_relabel_cuda.so
        the GPU operators and their kernels (``*.cu``; nvcc, per target arch). It links against the first
        library (a GPU registration needs its schema's marker symbol, and the GPU lookup opens banks through
        the shared ``Bank::Open``), found through its soname and an ``$ORIGIN/..`` run path, and is loaded
        second: DALI accepts GPU registrations for schemas an earlier library registered.

The CPU key covers the DALI version and flags, the C++ compiler, the CUDA headers and the ``.cc``/``.h``
sources; the CUDA key adds nvcc, the target archs and the ``.cu`` sources. Concurrent first builds
(several ranks, several test workers) compile once: one process builds under a file lock into a temporary
directory renamed into place (:func:`dali_relabel.fs.build_once`); the others wait and reuse it.

Environment variables: see :mod:`dali_relabel.ops.toolchain` and ``DALI_RELABEL_CACHE`` (:func:`dali_relabel.fs.cache_root`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from ..fs import build_once, cache_root
from . import sources as _sources
from .progress import BuildProgress
from .toolchain import BuildError, Toolchain, toolchain

CPU_LIB = "libdali_relabel.so"
CUDA_LIB = "libdali_relabel_cuda.so"
# Bump when the build recipe changes in a way the keys below do not capture.
RECIPE_VERSION = 2

# The dynamic symbols of libdali_relabel.so: what the CUDA library links against (the schema markers that
# DALI_REGISTER_OPERATOR requires, the shared host code in namespace dali_relabel). Everything else stays
# local, as -fvisibility=hidden would make it; -fno-semantic-interposition keeps the optimizer's freedom.
CPU_EXPORTS = """{
  global:
    extern "C++" {
      DALI_OPERATOR_SCHEMA_REQUIRED_FOR_relabel__*;
      dali_relabel::*;
      "typeinfo for dali_relabel::*";
      "typeinfo name for dali_relabel::*";
      "vtable for dali_relabel::*";
    };
  local: *;
};
"""


@dataclasses.dataclass(frozen=True)
class BuiltLibrary:
    """One built library in the cache."""

    path: Path
    archs: tuple[int, ...]        # CUDA library: SM versions compiled (PTX of the highest embedded too); CPU: ()
    build_seconds: float | None   # None when it came from the cache


@dataclasses.dataclass(frozen=True)
class BuiltPlugin:
    """The plugin's libraries: the CPU one always, the CUDA one when built or loaded."""

    dali_version: str
    cpu: BuiltLibrary
    cuda: BuiltLibrary | None = None

    @property
    def path(self) -> Path:
        """The CPU library (the one to load first)."""
        return self.cpu.path

    @property
    def with_cuda(self) -> bool:
        return self.cuda is not None

    @property
    def archs(self) -> tuple[int, ...]:
        return self.cuda.archs if self.cuda else ()

    @property
    def build_seconds(self) -> float | None:
        """Seconds spent compiling in the call that returned this, None if everything came from the cache."""
        times = [lib.build_seconds for lib in (self.cpu, self.cuda) if lib and lib.build_seconds is not None]
        return sum(times) if times else None

    def describe(self) -> str:
        def origin(lib: BuiltLibrary) -> str:
            return f"built in {lib.build_seconds:.1f} s" if lib.build_seconds is not None else "cached"

        lines = [f"dali_relabel plugin for DALI {self.dali_version}:",
                 f"  CPU:  {origin(self.cpu)}; {self.cpu.path}"]
        if self.cuda:
            archs = ", ".join(f"sm_{a}" for a in self.cuda.archs) + f" + PTX compute_{max(self.cuda.archs)}"
            lines.append(f"  CUDA ({archs}): {origin(self.cuda)}; {self.cuda.path}")
        else:
            lines.append("  CUDA: not built (built on first GPU use, or by `dali-relabel build --cuda`)")
        return "\n".join(lines)


def _hash_sources(h, paths: list[Path], root: Path) -> None:
    for p in paths:
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())


def cpu_cache_key(tc: Toolchain, root: Path | None = None) -> str:
    """Key of the CPU library: DALI, C++ compiler, CUDA headers, ``.cc`` and ``.h`` sources (not nvcc)."""
    root = _sources.CSRC if root is None else root
    h = hashlib.sha256(json.dumps({
        "recipe": RECIPE_VERSION, "exports": CPU_EXPORTS, "dali": tc.dali_version, "cflags": tc.dali_cflags,
        "cxx": tc.cxx_version, "cudart": tc.cudart_version,
    }, sort_keys=True).encode())
    cc, _, hdr = _sources.sources(root)
    _hash_sources(h, [*cc, *hdr], root)
    return h.hexdigest()[:16]


def cuda_cache_key(tc: Toolchain, root: Path | None = None) -> str:
    """Key of the CUDA library: the CPU library's key, nvcc, the target archs, the ``.cu`` sources."""
    if not tc.with_cuda:
        raise ValueError("cuda_cache_key needs a toolchain with nvcc and archs")
    root = _sources.CSRC if root is None else root
    h = hashlib.sha256(json.dumps({
        "cpu": cpu_cache_key(tc, root), "nvcc": tc.nvcc_version, "archs": tc.archs,
    }, sort_keys=True).encode())
    _hash_sources(h, _sources.sources(root)[1], root)
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Step:
    """One compiler or linker run."""

    name: str
    cmd: list[str]


def _includes(tc: Toolchain) -> list[str]:
    # DALI and CUDA as system headers: their own warnings are not ours to fix.
    return [f"-I{_sources.CSRC}", "-isystem", tc.dali_include, "-isystem", tc.cuda_include]


def gencode_flags(archs: tuple[int, ...]) -> list[str]:
    """Real code for each arch, plus PTX of the highest (JIT-compiled by the driver on newer GPUs)."""
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    top = max(archs)
    return [*flags, f"-gencode=arch=compute_{top},code=compute_{top}"]


def cpu_steps(tc: Toolchain, tmp: Path) -> list[Step]:
    """Compile every ``.cc``, then link ``libdali_relabel.so`` (exports: :data:`CPU_EXPORTS`)."""
    cc = _sources.sources()[0]
    steps, objects = [], []
    for i, src in enumerate(cc):
        obj = str(tmp / f"cc{i}_{src.stem}.o")
        steps.append(Step(src.name, [
            tc.cxx, "-std=c++20", "-O3", "-fPIC", "-fno-semantic-interposition", "-Wall",
            "-Wno-unused-variable",  # DALI_SCHEMA defines a static it never reads
            *tc.dali_cflags, *_includes(tc), "-c", str(src), "-o", obj]))
        objects.append(obj)
    exports = tmp / "exports.map"
    exports.write_text(CPU_EXPORTS)
    steps.append(Step(f"link {CPU_LIB}", [
        tc.cxx, "-shared", *objects, f"-Wl,--version-script={exports}", f"-Wl,-soname,{CPU_LIB}",
        f"-L{tc.dali_lib_dir}", "-ldali", f"-Wl,-rpath,{tc.dali_lib_dir}", "-o", str(tmp / CPU_LIB)]))
    return steps


def cuda_steps(tc: Toolchain, tmp: Path, cpu_lib: Path) -> list[Step]:
    """Compile every ``.cu`` for the target archs, then link ``libdali_relabel_cuda.so`` against ``cpu_lib``."""
    cu = _sources.sources()[1]
    gencode = gencode_flags(tc.archs)
    steps, objects = [], []
    for i, src in enumerate(cu):
        obj = str(tmp / f"cu{i}_{src.stem}.o")
        steps.append(Step(src.name, [
            tc.nvcc, "-std=c++20", "-O3", "--compiler-options", "-fPIC,-fvisibility=hidden",
            "--expt-relaxed-constexpr",
            # No FMA contraction: the shared math header must round exactly as on
            # the CPU (g++ does not contract for x86-64), so both backends agree.
            "--fmad=false", *gencode, *tc.dali_cflags, *_includes(tc), "-c", str(src), "-o", obj]))
        objects.append(obj)
    # Static cudart: the library needs only libdali_relabel, libdali and libc/libstdc++, exports no cuda*
    # symbols, and loads on machines without a GPU or a driver. Linking the CPU library by path records its
    # soname; $ORIGIN/.. is where it lies in the cache.
    steps.append(Step(f"link {CUDA_LIB}", [
        tc.nvcc, "-shared", "-cudart", "static", *gencode, *objects, str(cpu_lib),
        f"-L{tc.dali_lib_dir}", "-ldali", "-Xlinker=-rpath=$ORIGIN/..", f"-Xlinker=-rpath={tc.dali_lib_dir}",
        "-o", str(tmp / CUDA_LIB)]))
    return steps


def run_steps(steps: list[Step], progress: BuildProgress, jobs: int) -> None:
    """Runs the compile steps ``jobs`` at a time, then the last step (the link) alone.

    Each step's output goes to a temporary file (a pipe could fill and stall the compiler while another
    step is awaited), so steps are reported the moment they finish.

    Raises:
        BuildError: with every failed command and its output.
    """
    *compiles, link = steps
    failures = []
    for batch in (compiles, [link]):
        pending = list(batch)
        running: list[tuple[Step, subprocess.Popen, IO[str]]] = []
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    step = pending.pop(0)
                    log = tempfile.TemporaryFile("w+")
                    progress.start(step.name)
                    running.append((step, subprocess.Popen(step.cmd, stdout=log, stderr=subprocess.STDOUT), log))
                done = [r for r in running if r[1].poll() is not None]
                if not done:
                    time.sleep(0.05)
                    continue
                for step, proc, log in done:
                    running.remove((step, proc, log))
                    progress.finish(step.name, failed=proc.returncode != 0)
                    if proc.returncode != 0:
                        log.seek(0)
                        failures.append(f"$ {' '.join(step.cmd)}\n{log.read()}")
                    log.close()
        finally:  # interrupted (Ctrl-C) or failed to start: no compiler keeps running
            for _, proc, log in running:
                proc.kill()
                proc.wait()
                log.close()
        if failures:
            raise BuildError("compiling the dali_relabel plugin failed:\n" + "\n".join(failures))


def _jobs(n: int) -> int:
    return max(1, min(n, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _build_library(final: Path, lib_name: str, title: str, make_steps, meta: dict, *, force: bool,
                   verbose: bool) -> float | None:
    """Builds one library into ``final`` once (across processes); returns the seconds spent, None if cached."""
    def fill(tmp: Path) -> None:
        steps = make_steps(tmp)
        progress = BuildProgress(f"{title}: {len(steps)} steps, once (cached in {final.parent})",
                                 total=len(steps), verbose=verbose)
        try:
            run_steps(steps, progress, jobs=_jobs(len(steps) - 1))
        except BaseException:
            progress.close(ok=False)
            raise
        for p in [*tmp.glob("*.o"), *tmp.glob("*.map")]:
            p.unlink()
        (tmp / "build.json").write_text(json.dumps(meta, indent=1))
        progress.close()

    t0 = time.perf_counter()
    built = build_once(final, fill, complete=lambda d: (d / lib_name).is_file(), force=force)
    return time.perf_counter() - t0 if built else None


def cpu_dir(tc: Toolchain) -> Path:
    return cache_root() / f"dali-{tc.dali_version}" / cpu_cache_key(tc)


def build(*, cuda: bool = False, archs: tuple[int, ...] | None = None, force: bool = False,
          verbose: bool = True) -> BuiltPlugin:
    """Returns the cached plugin libraries for this DALI/toolchain/source combination, building what is missing.

    Args:
        cuda: also the CUDA library (needs nvcc).
        archs: its target SM versions (default: ``DALI_RELABEL_CUDA_ARCHS``, else every supported arch).
        force: rebuild even if cached (the CPU library, and the CUDA library if ``cuda``; rebuilding the CPU
            library drops the CUDA libraries built on it, which are rebuilt when next asked for).
        verbose: print the build's steps to stderr as they run.

    Raises:
        BuildError: no usable compiler, missing headers, (with ``cuda``) no nvcc, or a compile error (output
            included).
    """
    tc = toolchain(cuda=cuda, archs=archs)
    cpu_final = cpu_dir(tc)
    cpu_tc = {k: v for k, v in dataclasses.asdict(tc).items() if k not in ("nvcc", "nvcc_version", "archs")}
    cpu_seconds = _build_library(
        cpu_final, CPU_LIB, f"compiling the DALI plugin's CPU library for DALI {tc.dali_version}",
        lambda tmp: cpu_steps(tc, tmp), {"library": "cpu", "toolchain": cpu_tc}, force=force, verbose=verbose)
    plugin = BuiltPlugin(tc.dali_version, BuiltLibrary(cpu_final / CPU_LIB, (), cpu_seconds))
    if not cuda:
        return plugin
    cuda_final = cpu_final / f"cuda-{cuda_cache_key(tc)}"
    arch_names = ", ".join(f"sm_{a}" for a in tc.archs) + f" + PTX compute_{max(tc.archs)}"
    cuda_seconds = _build_library(
        cuda_final, CUDA_LIB, f"compiling the DALI plugin's CUDA library ({arch_names}) for DALI {tc.dali_version}",
        lambda tmp: cuda_steps(tc, tmp, cpu_final / CPU_LIB),
        {"library": "cuda", "archs": list(tc.archs), "toolchain": dataclasses.asdict(tc)},
        force=force, verbose=verbose)
    return dataclasses.replace(plugin, cuda=BuiltLibrary(cuda_final / CUDA_LIB, tc.archs, cuda_seconds))


__all__ = ["BuildError", "BuiltLibrary", "BuiltPlugin", "CPU_LIB", "CUDA_LIB", "Step", "build", "cpu_cache_key",
           "cpu_steps", "cuda_cache_key", "cuda_steps", "gencode_flags", "run_steps"]
