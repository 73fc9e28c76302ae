"""What the plugin costs before the first batch: import time, first builds, loading from the cache.

Each figure is measured in fresh processes with their own empty (or warm) cache directory, medians of the
repeats:

* ``import``: ``import dali_relabel`` (and whether it imported DALI), against ``import nvidia.dali`` measured in the
  same run (what importing the package would cost if it imported DALI).
* ``cpu``: first use on a machine without a GPU: building the CPU library (empty cache).
* ``cuda_one_arch``, ``cuda_all_archs``: then building the CUDA library for one arch (what first use builds on a
  machine with one kind of GPU) and for every supported arch (CI, ``build --cuda`` without a GPU). The CPU library
  is already cached, so these are the CUDA library alone. Before the split (one library) a first use built the
  CPU objects and the CUDA objects for every arch together: ``before_first_use`` = cpu + cuda_all_archs.
* ``load_cached``: ``load_plugin()`` in a new process when everything is cached (toolchain detection, cache key,
  dlopen, DALI's op module refresh), and ``load_cached_cuda`` the same with the CUDA library.

Compile times depend on the cores and on what else runs: the load average is recorded before and after, and
each build's compiler CPU seconds (user + system of the compilers and linkers) are reported next to its wall time:
on a busy machine they are the steadier figure (wall ≈ CPU seconds / the cores the build could use).

    .venv/bin/python benchmarks/build_bench.py [--repeats 3] [--cuda-repeats 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_result  # noqa: E402

TIME_CHILD = """
import sys, time, json, resource
{pre}
t0 = time.perf_counter()
{setup}
t1 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the compilers and linkers this process waited for
print(json.dumps({{"seconds": t1 - t0, "compiler_cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "dali_imported": "nvidia.dali" in sys.modules}}))
"""


def child(setup: str, env: dict, pre: str = "import nvidia.dali") -> dict:
    """Seconds ``setup`` takes in a new process, after ``pre`` (by default DALI is imported first, untimed)."""
    import json

    r = subprocess.run([sys.executable, "-c", TIME_CHILD.format(pre=pre, setup=setup)], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"child failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def median_of(samples: list[dict], key: str = "seconds") -> float:
    return statistics.median(s[key] for s in samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the CPU build and of the cheap figures")
    ap.add_argument("--cuda-repeats", type=int, default=1, help="repeats of each CUDA build (minutes each)")
    ap.add_argument("--one-arch", type=int, default=90, help="the arch of the one-arch CUDA build")
    ap.add_argument("--quick", action="store_true", help="no CUDA builds")
    ap.add_argument("--json", help="result path (default results/build_bench-<date>-cpu.json)")
    args = ap.parse_args()

    load_before = os.getloadavg()
    results: dict[str, float | bool | None] = {}
    imports = [child("import dali_relabel", {}, pre="") for _ in range(max(5, args.repeats))]
    results["import_dali_relabel"] = median_of(imports)
    results["import_dali_relabel_imports_dali"] = any(s["dali_imported"] for s in imports)
    results["import_nvidia_dali"] = median_of([child("import nvidia.dali", {}, pre="") for _ in range(max(5, args.repeats))])

    cpu_build = "import dali_relabel.ops.build as b; b.build(verbose=False)"
    cuda_build = "import dali_relabel.ops.build as b; b.build(cuda=True, archs={archs}, verbose=False)"
    samples = {"cpu": [], "cuda_one_arch": [], "cuda_all_archs": []}
    with tempfile.TemporaryDirectory(prefix="build_bench-") as tmp:
        for i in range(args.repeats):
            cache = {"DALI_RELABEL_CACHE": f"{tmp}/cpu{i}", "DALI_RELABEL_NVCC": "none"}
            samples["cpu"].append(child(cpu_build, cache))
        warm = {"DALI_RELABEL_CACHE": f"{tmp}/cpu0"}
        results["cpu"] = median_of(samples["cpu"])
        results["cpu_compiler_cpu_seconds"] = median_of(samples["cpu"], "compiler_cpu_seconds")
        results["load_cached"] = median_of([child("import dali_relabel; dali_relabel.load_plugin(cuda=False)", warm)
                                            for _ in range(max(5, args.repeats))])
        if not args.quick:
            for i in range(args.cuda_repeats):
                for name, archs in (("cuda_one_arch", (args.one_arch,)), ("cuda_all_archs", (75, 80, 90))):
                    cache = f"{tmp}/cuda{i}-{name}"
                    child(cpu_build, {"DALI_RELABEL_CACHE": cache})  # the CPU library first, not timed
                    samples[name].append(child(cuda_build.format(archs=archs), {"DALI_RELABEL_CACHE": cache}))
            for name in ("cuda_one_arch", "cuda_all_archs"):
                results[name] = median_of(samples[name])
                results[f"{name}_compiler_cpu_seconds"] = median_of(samples[name], "compiler_cpu_seconds")
            results["before_first_use"] = results["cpu"] + results["cuda_all_archs"]
            warm_cuda = {"DALI_RELABEL_CACHE": f"{tmp}/cuda0-cuda_all_archs", "DALI_RELABEL_CUDA_ARCHS": "75,80,90"}
            results["load_cached_cuda"] = median_of([
                child("import dali_relabel; dali_relabel.load_plugin(cuda=True)", warm_cuda)
                for _ in range(max(5, args.repeats))])
    payload = {"device": "cpu", "one_arch": args.one_arch, "repeats": args.repeats, "cuda_repeats": args.cuda_repeats,
               "load_average_before": load_before, "load_average_after": os.getloadavg(),
               "samples": samples, "seconds": results}
    path = write_result("build_bench", payload, args.json, tag="quick" if args.quick else None)
    rows = [{"what": k, "seconds": v} for k, v in results.items() if isinstance(v, float)]
    print(markdown_table(rows, [("what", "what", ""), ("seconds", "seconds", ".3f")]))
    print(f"import dali_relabel imports DALI: {results['import_dali_relabel_imports_dali']}; "
          f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; {path}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
