"""Hand-written mutants of the C++ the CPU backend runs: the shared math header, the label_pool and lookup CPU
backends. Each is applied to a throwaway copy of the checkout (``copy_tree.py``), the CPU plugin is rebuilt
(into a throwaway cache: the user's is untouched), and the mutant's test files run (``pytest -x``).

A mutant is one textual change whose original text must occur exactly once (an edit of the source that moves
it fails here loudly). ``equivalent`` marks the ones no test can see, with the reason; every other one must
be killed. The CUDA kernels' mutants live in tests/ops/test_cudasim_mutants.py (built and run on the CPU by
the cudasim simulator); ``--kernels`` runs that test file too and reports its mutants here, so that one
command gives the C++ score.

Run (about 2–3 min per mutant on 2 cores, mostly the rebuild; ``--kernels`` adds the cudasim file):
    .venv/bin/python benchmarks/mutation/cpp_mutants.py [--only NAME,...] [--kernels] [--list]
    .venv/bin/python benchmarks/mutation/cpp_mutants.py --kernels-into results/mutation-cpp-DATE.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RESULTS, git_commit, machine  # noqa: E402  (benchmarks/common.py)
from copy_tree import ROOT, copy_env, make_copy  # noqa: E402

CSRC = "dali_relabel/ops/csrc"
MATH = "label_pool/label_pool_math.h"
POOL_CPU = "label_pool/cpu/label_pool_cpu.cc"
LOOKUP_CPU = "lookup/cpu/lookup_cpu.cc"
POOL_TESTS = ("tests/ops/test_label_pool.py", "tests/ops/test_label_pool_official.py")
LOOKUP_TESTS = ("tests/ops/test_lookup.py",)


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # under dali_relabel/ops/csrc
    old: str
    new: str
    tests: tuple[str, ...] = POOL_TESTS
    equivalent: str = ""  # why no test can see it ("" = it must be killed)


MUTANTS = [
    # The shared math header, default (float64) geometry.
    Mutant("aligned=False minimum extent dropped", MATH, "  if (extent < 1.0) extent = 1.0;", "  "),
    Mutant("sample grid truncated instead of ceil", MATH, "static_cast<int>(ceil(extent));",
           "static_cast<int>(extent);"),
    Mutant("samples at bin starts, not centres", MATH, "double p = lo + (i + 0.5) * extent / grid;",
           "double p = lo + i * extent / grid;"),
    Mutant("near edge: samples in [-1, 0) dropped", MATH, "if (p < -1.0 || p > size) continue;",
           "if (p < 0.0 || p > size) continue;"),
    Mutant("far edge p > size -> p >= size (default geometry)", MATH, "if (p < -1.0 || p > size) continue;",
           "if (p < -1.0 || p >= size) continue;",
           equivalent="in float64, rel <= 1 puts every sample at least ~6e-8 inside size (lo + (i + 0.5) "
                      "extent / grid < hi = size - 0.5); see tests/label_pool_cases.py"),
    Mutant("last-cell clamp off by one", MATH, "    if (low >= size - 1) {                  // clamp",
           "    if (low > size - 1) {                  // clamp"),
    Mutant("weights not averaged over the grid", MATH,
           "  for (int i = span.first; i <= span.last; ++i) w[i] /= grid;  // average over the sample grid", ""),
    Mutant("official geometry: a sample on the far edge dropped", MATH,
           "if (p < -1.0f || p > static_cast<float>(size)) continue;",
           "if (p < -1.0f || p >= static_cast<float>(size)) continue;"),
    Mutant("official geometry: rows scaled by H instead of W", MATH,
           "static_cast<float>(box.y1), w, h, out)", "static_cast<float>(box.y1), h, h, out)"),
    Mutant("temperature ignored", MATH, "expf(static_cast<float>(z - z_max) * inv_temperature)",
           "expf(static_cast<float>(z - z_max))"),
    Mutant("class range check off by one", MATH, "return cls >= 0 && cls < num_classes;",
           "return cls >= 0 && cls <= num_classes;"),
    # The label_pool CPU backend.
    Mutant("softmax max starts at 0 when every class is touched", POOL_CPU,
           "double z_max = background > 0 ? 0.0 : -std::numeric_limits<double>::infinity();",
           "double z_max = 0.0;"),
    Mutant("float16 finiteness mask 0x7c00 -> 0x7e00", POOL_CPU, "return (bits & 0x7c00u) != 0x7c00u;",
           "return (bits & 0x7e00u) != 0x7e00u;"),
    Mutant("argmax keeps the last maximum", POOL_CPU, "if (s.z[j] > s.z[best]) best = j;",
           "if (s.z[j] >= s.z[best]) best = j;"),
    Mutant("background classes counted once", POOL_CPU, "double sum = static_cast<double>(bg) * background;",
           "double sum = static_cast<double>(bg);"),
    Mutant("scratch not cleared after a sample", POOL_CPU,
           "    out[cls] = static_cast<float>(softmax_numerator(s.z[cls], z_max, inv_temperature) * inv_sum);\n"
           "    s.z[cls] = 0.0;\n",
           "    out[cls] = static_cast<float>(softmax_numerator(s.z[cls], z_max, inv_temperature) * inv_sum);\n"),
    # The lookup CPU backend.
    Mutant("label of the batch position, not the row", LOOKUP_CPU, "= label_src[row];", "= label_src[i];",
           LOOKUP_TESTS),
]


def run_one(m: Mutant, copy: Path, env: dict) -> dict:
    path = copy / CSRC / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutant '{m.name}': its text occurs {text.count(m.old)} times in {m.file}, not once")
    path.write_text(text.replace(m.old, m.new))
    try:
        t0 = time.monotonic()
        built = subprocess.run([sys.executable, "-c", "from dali_relabel.ops import build; build.build(verbose=False)"],
                               cwd=copy, env=env, capture_output=True, text=True)
        build_s = time.monotonic() - t0
        if built.returncode:
            return {"outcome": "incompetent", "why": "does not compile", "build_s": round(build_s),
                    "output_tail": built.stderr[-1500:]}
        t0 = time.monotonic()
        tests = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
                                *m.tests], cwd=copy, env=env, capture_output=True, text=True)
        last = [line for line in tests.stdout.splitlines() if line.strip()][-1:]
        failed = re.findall(r"^FAILED (\S+)", tests.stdout, re.M)
        return {"outcome": "killed" if tests.returncode else "survived", "build_s": round(build_s),
                "test_s": round(time.monotonic() - t0), "summary": last[0] if last else "",
                "killed_by": failed[0] if failed else None}
    finally:
        path.write_text(text)


def run_kernels() -> list[dict]:
    """tests/ops/test_cudasim_mutants.py, run as it is (it applies its mutants to its own temporary copies)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cudasim", "-rA",
                           "--no-header", "tests/ops/test_cudasim_mutants.py"], cwd=ROOT, capture_output=True, text=True)
    out = []
    for status, name in re.findall(r"^(PASSED|FAILED|ERROR) tests/ops/test_cudasim_mutants.py::"
                                   r"test_mutant_is_caught\[(.+?)\]", proc.stdout, re.M):
        out.append({"name": name, "file": "cudasim: tests/ops/test_cudasim_mutants.py",
                    "outcome": "killed" if status == "PASSED" else "survived"})
    if not out:
        raise SystemExit(f"no cudasim mutant results:\n{proc.stdout[-3000:]}")
    return out


def write_markdown(report: dict, path: Path) -> None:
    rows = report["mutants"] + report.get("kernels", [])
    lines = [f"# C++ mutants — {report['date']}", "",
             f"Commit `{report['commit']}`; hand-written mutants (benchmarks/mutation/cpp_mutants.py), CPU plugin "
             "rebuilt per mutant; kernel mutants from tests/ops/test_cudasim_mutants.py (cudasim)"
             + ("" if report.get("kernels") else ", not run this time (--kernels)") + ".", ""]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["file"], []).append(r)
    lines += ["| file | mutants | killed | equivalent | survived | score |", "|---|---|---|---|---|---|"]
    for file, rs in groups.items():
        killed = sum(r["outcome"] == "killed" for r in rs)
        equiv = sum(r["outcome"] == "survived" and bool(r.get("equivalent")) for r in rs)
        surv = sum(r["outcome"] == "survived" and not r.get("equivalent") for r in rs)
        score = f"{100 * killed / (killed + surv):.0f}%" if killed + surv else "–"
        lines.append(f"| {file} | {len(rs)} | {killed} | {equiv} | {surv} | {score} |")
    lines += ["", "| mutant | file | outcome | killed by / judgement |", "|---|---|---|---|"]
    for r in rows:
        note = r.get("killed_by") or r.get("equivalent") or r.get("why") or ""
        if r["outcome"] == "survived" and r.get("equivalent"):
            note = "equivalent: " + r["equivalent"]
        lines.append(f"| {r['name']} | {r['file']} | {r['outcome']} | {note} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated mutant names (default: all)")
    parser.add_argument("--kernels", action="store_true", help="also run tests/ops/test_cudasim_mutants.py")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--kernels-into", type=Path, metavar="JSON",
                        help="run only the cudasim kernel mutants and add them to this earlier report")
    parser.add_argument("--out", type=Path, help="JSON path (default results/mutation-cpp-<date>.json)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the copy (finally below)
    if args.list:
        for m in MUTANTS:
            print(f"{m.file}: {m.name}" + (" (equivalent)" if m.equivalent else ""))
        return
    if args.kernels_into:
        report = json.loads(args.kernels_into.read_text())
        report["kernels"] = run_kernels()
        args.kernels_into.write_text(json.dumps(report, indent=1) + "\n")
        write_markdown(report, args.kernels_into.with_suffix(".md"))
        print(args.kernels_into.with_suffix(".md").read_text())
        return
    chosen = MUTANTS
    if args.only:
        names = set(args.only.split(","))
        chosen = [m for m in MUTANTS if m.name in names]
        if len(chosen) != len(names):
            parser.error(f"unknown mutant(s): {sorted(names - {m.name for m in MUTANTS})}")
    out = args.out or RESULTS / f"mutation-cpp-{datetime.date.today():%Y%m%d}.json"
    report = {"benchmark": "mutation_cpp", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "commit": git_commit(), "machine": machine(), "mutants": []}
    copy = make_copy("dali_relabel_cpp_mutation-")
    env = copy_env(copy, DALI_RELABEL_CACHE=str(copy / ".cache"), DALI_RELABEL_NVCC="off")
    try:
        for m in chosen:
            r = {"name": m.name, "file": m.file, **run_one(m, copy, env)}
            if m.equivalent:
                r["equivalent"] = m.equivalent
            print(f"{r['outcome']:>11}  {m.file}: {m.name}  ({r.get('summary') or r.get('why', '')})", flush=True)
            report["mutants"].append(r)
            out.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    if args.kernels:
        report["kernels"] = run_kernels()
        out.write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, out.with_suffix(".md"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
