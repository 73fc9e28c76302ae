"""Builds the cudasim test driver with g++ and runs cases through it (see docs/CUDASIM.md).

The driver (``src/driver.cc``) links the simulator, the DALI stand-ins, the self-test kernels
and the project's operators that have CUDA code (every operator folder under
``dali_relabel/ops/csrc`` holding a ``.cu`` file: its schema, CPU and CUDA sources), with the
``.cu`` files passed through ``rewrite.py``. Objects are cached by content hash under
``<cache root>/cudasim`` (see ``dali_relabel.fs.cache_root``), so a rebuild compiles only what
changed; a mutant (``overrides``) recompiles only the files it changes or that include them.

Variants: ``plain`` (-O2), ``tsan`` (ThreadSanitizer), ``asan`` (AddressSanitizer + UBSan).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

from .rewrite import RewriteError, rewrite

SIM = Path(__file__).resolve().parent
REPO = SIM.parents[1]
CSRC = REPO / "dali_relabel" / "ops" / "csrc"
RECIPE = 3  # bump when the build recipe changes in a way the hashes below do not capture

VARIANTS = {
    "plain": ["-O2"],
    "tsan": ["-O1", "-g", "-fsanitize=thread"],
    "asan": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
}
COMMON = ["-std=c++20", "-pthread", "-Wall", "-Wno-unused-variable", "-Wno-unused-function"]

DTYPES = {np.dtype(np.float16): "float16", np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
          np.dtype(np.int8): "int8", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
          np.dtype(np.int64): "int64", np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16",
          np.dtype(np.uint32): "uint32", np.dtype(np.uint64): "uint64", np.dtype(np.bool_): "bool"}
NP_TYPES = {v: k for k, v in DTYPES.items()}


class BuildError(RuntimeError):
    """A source failed to rewrite or compile; the message holds the compiler's output."""


def cache_dir() -> Path:
    from dali_relabel.fs import cache_root

    return cache_root() / "cudasim"


def operator_sources() -> list[Path]:
    """The .cc/.cu files of every operator folder under csrc/ that has CUDA code, sorted."""
    folders = sorted({p.relative_to(CSRC).parts[0] for p in CSRC.rglob("*.cu")})
    return sorted(p for f in folders for p in (CSRC / f).rglob("*") if p.suffix in (".cc", ".cu"))


def sim_sources() -> list[Path]:
    return sorted((SIM / "src").glob("*.cc")) + sorted((SIM / "selftest").glob("*.cu"))


_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def _dependencies(text: str, include_dirs: list[Path], headers: dict[Path, bytes]) -> list[Path]:
    """The project headers a source includes, transitively (system headers are not followed)."""
    seen: dict[Path, None] = {}
    stack = [text]
    while stack:
        for name in _INCLUDE.findall(stack.pop()):
            for d in include_dirs:
                p = d / name
                if p in headers or p.is_file():
                    if p not in seen:
                        seen[p] = None
                        stack.append(headers[p].decode() if p in headers else p.read_text())
                    break
    return sorted(seen)


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _compiler() -> str:
    return os.environ.get("CXX") or shutil.which("g++") or "g++"


def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


@dataclasses.dataclass(frozen=True)
class Binary:
    path: Path
    variant: str
    seconds: float  # build time of this call (0 when fully cached)
    compiled: int   # objects compiled by this call


def build(variant: str = "plain", overrides: dict[str, str] | None = None) -> Binary:
    """Builds (or finds in the cache) the driver.

    Args:
        variant: "plain", "tsan" or "asan".
        overrides: csrc-relative path -> replacement text (a mutant); headers included.
    """
    overrides = dict(overrides or {})
    for rel in overrides:
        if not (CSRC / rel).is_file():
            raise ValueError(f"override of {rel}: no such file under {CSRC}")
    start = time.monotonic()
    cxx = _compiler()
    flags = COMMON + VARIANTS[variant]
    root = cache_dir()
    (root / "obj").mkdir(parents=True, exist_ok=True)
    base_key = _sha(str(RECIPE), cxx, _compiler_version(cxx), " ".join(flags))

    with tempfile.TemporaryDirectory(prefix="cudasim-") as tmp:
        tmp = Path(tmp)
        overlay = tmp / "overlay"
        for rel, text in overrides.items():
            if rel.endswith(".h"):
                (overlay / rel).parent.mkdir(parents=True, exist_ok=True)
                (overlay / rel).write_text(text)
        include_dirs = [SIM / "include", overlay, CSRC]
        includes = [f"-I{d}" for d in include_dirs]
        # Mutated headers are read from the overlay; an object's key covers the headers it includes.
        headers = {overlay / rel: text.encode() for rel, text in overrides.items() if rel.endswith(".h")}

        jobs = []
        for src in [*sim_sources(), *operator_sources()]:
            in_csrc = src.is_relative_to(CSRC)
            label = str(src.relative_to(CSRC if in_csrc else SIM))
            text = overrides.get(label, src.read_text()) if in_csrc else src.read_text()
            defines = []
            if src.suffix == ".cu":
                try:
                    text = rewrite(text, label)
                except RewriteError as e:
                    raise BuildError(f"rewrite.py: {e}") from None
                defines = ["-D__CUDACC__", "-DCUDASIM"]
            deps = _dependencies(text, include_dirs, headers)
            dep_key = _sha(*[str(p.relative_to(p.parents[len(p.parents) - 1])) for p in deps],
                           *[headers[p] if p in headers else p.read_bytes() for p in deps])
            key = _sha(base_key, label, " ".join(defines), text, dep_key)
            obj = root / "obj" / f"{key}.o"
            jobs.append((label, text, defines, obj))

        todo = [j for j in jobs if not j[3].exists()]

        def compile_one(job):
            label, text, defines, obj = job
            src = tmp / "src" / (label.replace("/", "__") + ".cc")
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(text)
            part = obj.with_name(f".{obj.name}.{os.getpid()}.tmp")
            r = subprocess.run([cxx, *flags, *defines, *includes, "-c", str(src), "-o", str(part)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                part.unlink(missing_ok=True)
                raise BuildError(f"compiling {label} ({variant}) failed:\n{r.stderr[-6000:]}")
            os.replace(part, obj)

        workers = max(1, min(len(todo), os.cpu_count() or 1))
        if todo:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                for f in [pool.submit(compile_one, j) for j in todo]:
                    f.result()

        exe_key = _sha(base_key, *[j[3].name for j in jobs])
        exe = root / "bin" / f"{exe_key}-{variant}"
        if not exe.exists():
            exe.parent.mkdir(parents=True, exist_ok=True)
            part = exe.with_name(f".{exe.name}.{os.getpid()}.tmp")
            r = subprocess.run([cxx, *flags, *[str(j[3]) for j in jobs], "-o", str(part)], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise BuildError(f"linking the cudasim driver ({variant}) failed:\n{r.stderr[-6000:]}")
            os.replace(part, exe)
    return Binary(exe, variant, time.monotonic() - start, len(todo))


# --- running cases ----------------------------------------------------------------------------------


def _enc(s: str) -> str:
    return urllib.parse.quote(s, safe="") or "%00"


def _dec(s: str) -> str:
    return urllib.parse.unquote(s).replace("\0", "")


class TensorArg:
    """Marks an operator argument given per sample (an argument input) in ``Session.op``."""


@dataclasses.dataclass
class Launch:
    kernel: str
    site: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    dynamic_shared: int
    status: str


@dataclasses.dataclass
class Result:
    tag: str
    status: str  # "ok", "error" (an exception the operator raised, or a CUDA error) or "fault"
    message: str = ""
    outputs: list[list[np.ndarray]] = dataclasses.field(default_factory=list)
    launches: list[Launch] = dataclasses.field(default_factory=list)

    def expect_ok(self) -> list[list[np.ndarray]]:
        assert self.status == "ok", f"{self.tag}: {self.status}: {self.message}"
        return self.outputs


@dataclasses.dataclass
class RunOutput:
    results: dict[str, Result]
    stats_history: list[dict[str, int]]  # one per `stats` command, in order
    kernels: list[tuple[str, int, bool, int, int]]
    returncode: int
    stderr: str
    seconds: float

    @property
    def stats(self) -> dict[str, int]:
        """The last `stats` the driver printed."""
        return self.stats_history[-1]

    def __getitem__(self, tag: str) -> Result:
        if tag not in self.results:
            raise KeyError(f"no result for {tag!r}: the driver stopped early (rc={self.returncode}); "
                           f"stderr:\n{self.stderr[-4000:]}")
        return self.results[tag]

    @property
    def tsan_reports(self) -> list[str]:
        return [r for r in self.stderr.split("==================") if "WARNING: ThreadSanitizer" in r]


class Session:
    """Commands for one run of the driver process; ``execute`` runs them."""

    def __init__(self):
        self.lines: list[str] = []
        self.blob = bytearray()

    def _put(self, a: np.ndarray) -> str:
        a = np.ascontiguousarray(a)
        if a.dtype not in DTYPES:
            raise TypeError(f"dtype {a.dtype} not supported by the driver")
        while len(self.blob) % 16:
            self.blob.append(0)
        offset = len(self.blob)
        self.blob += a.tobytes()
        return f"{DTYPES[a.dtype]} {a.ndim} {' '.join(map(str, a.shape))} {offset}".replace("  ", " ")

    def device(self, key: str, value) -> Session:
        self.lines.append(f"device {key} {value}")
        return self

    def threads(self, n: int) -> Session:
        self.lines.append(f"threads {n}")
        return self

    def op(self, op_id: str, schema: str, backend: str, **args) -> Session:
        self.lines.append(f"op {op_id} {schema} {backend}")
        for name, v in args.items():
            if v is TensorArg or isinstance(v, TensorArg):
                self.lines.append(f"arg {name} tensor")
            elif isinstance(v, bool):
                self.lines.append(f"arg {name} b {int(v)}")
            elif isinstance(v, (int, np.integer)):
                self.lines.append(f"arg {name} i {int(v)}")
            elif isinstance(v, (float, np.floating)):
                self.lines.append(f"arg {name} f {float(v)!r}")
            elif isinstance(v, str):
                self.lines.append(f"arg {name} s {_enc(v)}")
            else:
                values = [float(x) for x in v]
                self.lines.append(f"arg {name} l {len(values)} {' '.join(repr(x) for x in values)}")
        self.lines.append("end")
        return self

    def run(self, tag: str, op_id: str, inputs=(), arg_inputs=None, batch: int | None = None,
            misalign: tuple[int, ...] = ()) -> Session:
        """Runs operator ``op_id``: ``inputs[i]`` is the list of samples of input i; output i's samples
        start ``misalign[i]`` bytes past an aligned address."""
        n = batch if batch is not None else (len(inputs[0]) if inputs else
                                             len(next(iter((arg_inputs or {}).values()))))
        self.lines.append(f"run {tag} {op_id} {n}")
        for i, samples in enumerate(inputs):
            for s in samples:
                self.lines.append(f"in {i} {self._put(np.asarray(s))}")
        for name, samples in (arg_inputs or {}).items():
            for s in samples:
                self.lines.append(f"argin {name} {self._put(np.asarray(s))}")
        if any(misalign):
            self.lines.append(f"misalign {' '.join(map(str, misalign))}")
        self.lines.append("endrun")
        return self

    def destroy(self, op_id: str) -> Session:
        self.lines.append(f"destroy {op_id}")
        return self

    def selftest(self, tag: str, name: str, *args) -> Session:
        self.lines.append(f"selftest {tag} {name} {' '.join(map(str, args))}".rstrip())
        return self

    def stats(self) -> Session:
        self.lines.append("stats")
        return self

    def kernels(self) -> Session:
        self.lines.append("kernels")
        return self

    def execute(self, binary: Binary, timeout: float = 300, env: dict[str, str] | None = None) -> RunOutput:
        with tempfile.TemporaryDirectory(prefix="cudasim-run-") as tmp:
            blob, out = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
            blob.write_bytes(bytes(self.blob))
            script = "\n".join([f"blob {_enc(str(blob))}", f"outblob {_enc(str(out))}", *self.lines, "quit", ""])
            full_env = dict(os.environ)
            full_env.setdefault("TSAN_OPTIONS", "halt_on_error=0 exitcode=66 report_signal_unsafe=0")
            full_env.setdefault("ASAN_OPTIONS", "detect_leaks=0 abort_on_error=0")
            full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1 halt_on_error=1")
            full_env.update(env or {})
            start = time.monotonic()
            p = subprocess.run([str(binary.path)], input=script, capture_output=True, text=True, timeout=timeout,
                               env=full_env)
            seconds = time.monotonic() - start
            data = out.read_bytes() if out.exists() else b""
        return _parse(p.stdout, data, p.returncode, p.stderr, seconds)


def _parse(stdout: str, data: bytes, returncode: int, stderr: str, seconds: float) -> RunOutput:
    results: dict[str, Result] = {}
    stats: list[dict[str, int]] = []
    kernels = []
    current: Result | None = None
    lines = stdout.splitlines()
    i = 0
    while i < len(lines):
        w = lines[i].split()
        i += 1
        if not w:
            continue
        if w[0] == "result":
            current = Result(w[1], w[2])
            results[w[1]] = current
            if w[2] != "ok":
                current.message = _dec(w[3]) if len(w) > 3 else ""
                continue
            for _ in range(int(w[3])):
                _, _, dtype, n = lines[i].split()
                i += 1
                arrays = []
                for _ in range(int(n)):
                    s = lines[i].split()
                    i += 1
                    ndim = int(s[1])
                    shape = tuple(int(x) for x in s[2:2 + ndim])
                    offset = int(s[2 + ndim])
                    dt = NP_TYPES[dtype]
                    count = int(np.prod(shape, dtype=np.int64))
                    arrays.append(np.frombuffer(data, dt, count, offset).reshape(shape).copy())
                current.outputs.append(arrays)
        elif w[0] == "launch" and current is not None:
            current.launches.append(Launch(_dec(w[1]), _dec(w[2]), tuple(map(int, w[3].split(","))),
                                           tuple(map(int, w[4].split(","))), int(w[5]), w[6]))
        elif w[0] in ("created", "failed"):
            pass
        elif w[0] == "stats":
            stats.append({w[j]: int(w[j + 1]) for j in range(1, len(w) - 1, 2)})
        elif w[0] == "kernel":
            kernels.append((_dec(w[1]), int(w[2]), w[3] == "1", int(w[4]), int(w[5])))
        elif w[0] == "driver-error":
            raise RuntimeError(f"cudasim driver: {_dec(w[1])}\nstderr:\n{stderr[-4000:]}")
    return RunOutput(results, stats, kernels, returncode, stderr, seconds)
