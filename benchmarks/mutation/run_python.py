"""Mutation testing of the Python core with cosmic-ray: does each module's own test set catch small bugs?

For each core module (``MODULES``: its source files and the test files that cover it) cosmic-ray lists every
mutant of the sources (a comparison flipped, an operator swapped, a number changed, ``and`` made ``or``, a
condition negated, an exception type replaced, a loop run zero times, ...); this script drops the mutants no
test can see (type annotations, never evaluated under ``from __future__ import annotations``), samples
``--lines`` source lines per module (one random mutant each; seeded), runs each sampled mutant against the
module's test files (``pytest -x``: the first failure kills it) in a throwaway copy of the checkout
(``copy_tree.py``), and writes one JSON file (every mutant with its diff and outcome) and a markdown report
(score per module, every survivor with its judgement from ``judgements.json``) under ``benchmarks/results/``.

Run (about 30 min with the defaults on 2 busy cores: ~30 s per mutant):
    .venv/bin/python benchmarks/mutation/run_python.py [--lines 10] [--modules store,bank] [--seed 0]
    .venv/bin/python benchmarks/mutation/run_python.py --rerun-survivors results/mutation-python-DATE.json
    .venv/bin/python benchmarks/mutation/run_python.py --report-only results/mutation-python-DATE.json

Needs cosmic-ray (``pip install -e '.[mutation]' -c constraints.txt``); not part of the test suite. How to read
the report: docs/MUTATION.md.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import json
import random
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
from copy_tree import copy_env, make_copy  # noqa: E402
from report import judgement_key, load_judgements, write_markdown  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Module:
    """A core module: the sources mutated, and the test files that cover them (the module's own tests)."""

    sources: tuple[str, ...]
    tests: tuple[str, ...]


MODULES = {
    "store": Module(("dali_relabel/store/format.py", "dali_relabel/store/label_store.py",
                     "dali_relabel/store/creation.py", "dali_relabel/store/location.py"),
                    # tests/test_faults.py covers these too but takes ~5 min here: too slow per mutant
                    ("tests/store/test_store.py", "tests/store/test_scores_dtype.py")),
    "bank": Module(("dali_relabel/store/bank.py",), ("tests/store/test_bank.py",)),
    "naver_import": Module(("dali_relabel/store/naver_import.py",), ("tests/store/test_naver_import.py",)),
    "loader": Module(("dali_relabel/loader",),
                     ("tests/training/test_loader.py", "tests/training/test_loader_args.py",
                      "tests/training/test_loader_epochs.py", "tests/training/test_epochs.py",
                      "tests/training/test_grouped_order.py", "tests/training/test_shard_loader.py")),
    "mix": Module(("dali_relabel/mix.py",), ("tests/training/test_mix.py",)),
    "pipelines": Module(("pipelines",), ("tests/pipelines", "tests/annotate/test_annotate_pipeline.py",
                                         "tests/training/test_loader.py")),
}

# Mutants that mostly say nothing about the tests: renaming variables (VariableReplacer/Inserter: nearly all
# are NameErrors or no-ops) and removing decorators (a @dataclass or @property removed breaks every use).
EXCLUDED_OPERATORS = ("core/VariableReplacer", "core/VariableInserter", "core/RemoveDecorator")


def pytest_command(tests: tuple[str, ...]) -> str:
    return " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
                     "-W", "ignore::DeprecationWarning", *tests])


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation: never evaluated under ``from __future__ import
    annotations``, so a mutant there is equivalent by construction."""
    tree = ast.parse(path.read_text())
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body):
        return []
    spans = []
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes.append(node.returns)
        elif isinstance(node, ast.arg):
            notes.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        spans += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in notes if n is not None]
    return spans


def mutant_id(file: str, line: int, operator: str, occurrence: int) -> tuple[str, int, str, int]:
    return (file, line, operator, occurrence)


def select(db_path: Path, copy: Path, lines: int, seed: int, only: set | None = None) -> dict[str, int]:
    """Marks every mutant but the sample (or, with ``only``, but those mutant ids) as skipped in cosmic-ray's
    session; returns counts."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = {}
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        eligible: dict[tuple[str, int], list] = {}
        skip: dict[str, list[str]] = {"operator excluded": [], "annotation": [], "not sampled": []}
        found = set()
        for item in items:
            m = item.mutations[0]
            path = str(m.module_path)
            if path not in spans:
                spans[path] = annotation_spans(copy / path)
            if m.operator_name.startswith(EXCLUDED_OPERATORS):
                skip["operator excluded"].append(item.job_id)
            elif any(lo <= tuple(m.start_pos) < hi for lo, hi in spans[path]):
                skip["annotation"].append(item.job_id)
            elif only is not None:
                key = mutant_id(path, m.start_pos[0], m.operator_name, m.occurrence)
                if key in only:
                    found.add(key)
                    eligible.setdefault((path, m.start_pos[0]), []).append(item)
                else:
                    skip["not sampled"].append(item.job_id)
            else:
                eligible.setdefault((path, m.start_pos[0]), []).append(item)
        rng = random.Random(seed)
        keys = sorted(eligible)
        if only is not None and only - found:
            raise SystemExit(f"{len(only - found)} earlier survivors are no longer mutants of the sources (the "
                             f"code changed?), e.g. {sorted(only - found)[:3]}; run a fresh sample instead")
        chosen = set(rng.sample(keys, min(lines, len(keys)))) if lines > 0 and only is None else set(keys)
        for key in keys:
            group = sorted(eligible[key], key=lambda it: it.job_id)
            keep = (rng.choice(group) if only is None else None) if key in chosen else None
            skip["not sampled"] += [it.job_id for it in group if it is not keep and
                                    (only is None or key not in chosen)]
        for reason, ids in skip.items():
            if ids:
                db.set_multiple_results(ids, WorkResult(output=reason, worker_outcome=WorkerOutcome.SKIPPED))
        return {"mutants": len(items), "eligible": sum(map(len, eligible.values())), "lines": len(keys),
                "sampled": len(chosen), **{k: len(v) for k, v in skip.items()}}


_LOCAL_PATH = re.compile(r"/(?:[\w.+-]+/)+?(site-packages|tests|dali_relabel|pipelines)/")


def redact(text: str) -> str:
    """Test output without this machine's paths (the copy's, the environment's)."""
    return _LOCAL_PATH.sub(r"<...>/\1/", text)


def collect(db_path: Path, copy: Path) -> list[dict]:
    """Every mutant that ran: where, what, outcome, diff."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    out = []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            m = item.mutations[0]
            line = (copy / m.module_path).read_text().splitlines()[m.start_pos[0] - 1]
            outcome = result.test_outcome.value if result.test_outcome else result.worker_outcome.value
            if outcome == "killed" and result.output == "timeout":
                outcome = "timeout"
            out.append({"file": str(m.module_path), "line": m.start_pos[0], "operator": m.operator_name,
                        "occurrence": m.occurrence, "outcome": outcome, "source": line.strip(),
                        "diff": result.diff or "",
                        "output_tail": redact((result.output or "")[-1500:]) if outcome != "killed" else ""})
    return sorted(out, key=lambda r: (r["file"], r["line"], r["operator"]))


def run_module(name: str, module: Module, copy: Path, work: Path, lines: int, seed: int,
               previous: dict | None = None) -> dict:
    """Runs the module's sample; with ``previous`` (that module's entry of an earlier report), reruns only the
    mutants that survived there and keeps the other outcomes."""
    if previous is not None and not any(m["outcome"] == "survived" for m in previous["mutants"]):
        return previous
    cmd = pytest_command(module.tests)
    t0 = time.monotonic()
    base = subprocess.run(cmd.split(), cwd=copy, env=copy_env(copy), capture_output=True, text=True)
    baseline = time.monotonic() - t0
    if base.returncode:
        raise SystemExit(f"{name}: the unmutated tests fail in the copy; fix that first:\n{base.stdout[-3000:]}")
    timeout = max(120.0, 3 * baseline)
    config = work / f"{name}.toml"
    config.write_text("[cosmic-ray]\n"
                      f"module-path = {json.dumps(list(module.sources))}\n"
                      f"timeout = {timeout:.0f}\n"
                      "excluded-modules = []\n"
                      f"test-command = {json.dumps(cmd)}\n"
                      "[cosmic-ray.distributor]\nname = \"local\"\n")
    db = work / f"{name}.sqlite"
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cr, "init", str(config), str(db)], cwd=copy, env=copy_env(copy), check=True)
    only = None
    if previous is not None:
        only = {mutant_id(m["file"], m["line"], m["operator"], m["occurrence"]) for m in previous["mutants"]
                if m["outcome"] == "survived"}
    counts = select(db, copy, lines, seed, only) if only != set() else previous["counts"]
    print(f"{name}: {counts['mutants']} mutants, {counts['eligible']} eligible on {counts['lines']} lines, "
          f"running {counts['sampled']} (baseline {baseline:.0f} s, timeout {timeout:.0f} s)", flush=True)
    t0 = time.monotonic()
    if only != set():
        subprocess.run([*cr, "exec", str(config), str(db)], cwd=copy, env=copy_env(copy), check=True)
    mutants = collect(db, copy) if only != set() else []
    if previous is not None:
        mutants = sorted([m for m in previous["mutants"] if m["outcome"] != "survived"] + mutants,
                         key=lambda r: (r["file"], r["line"], r["operator"]))
    if previous is not None:  # the sample's counts stay those of the first run
        counts = {**previous["counts"], "rerun": counts}
    return {"sources": list(module.sources), "tests": list(module.tests), "counts": counts,
            "baseline_s": round(baseline, 1), "run_s": round(time.monotonic() - t0, 1), "mutants": mutants}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(MODULES), help="comma-separated, from: " + ", ".join(MODULES))
    parser.add_argument("--lines", type=int, default=10, help="source lines sampled per module (0: every line)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON path (default results/mutation-python-<date>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway copy (its path is printed)")
    parser.add_argument("--rerun-survivors", type=Path, metavar="JSON",
                        help="rerun only the mutants that survived in this earlier report (same sample, after "
                             "tests were added; the sources must be unchanged)")
    parser.add_argument("--report-only", type=Path, metavar="JSON",
                        help="only rewrite the .md of this report (after editing judgements.json)")
    args = parser.parse_args(argv)
    if args.report_only:
        print(write_markdown(json.loads(args.report_only.read_text()), load_judgements(),
                             args.report_only.with_suffix(".md")).read_text())
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the copy (finally below)
    names = args.modules.split(",")
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        parser.error("cosmic-ray is not installed: pip install -e '.[mutation]' -c constraints.txt")
    date = datetime.date.today().strftime("%Y%m%d")
    out = args.out or RESULTS / f"mutation-python-{date}.json"
    copy = make_copy("dali_relabel_mutation-")
    work = copy / ".mutation"
    work.mkdir()
    print(f"copy: {copy}", flush=True)
    report = {"benchmark": "mutation_python", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "commit": git_commit(), "machine": machine(),
              "tool": f"cosmic-ray {_version('cosmic-ray')}", "lines_per_module": args.lines, "seed": args.seed,
              "excluded_operators": list(EXCLUDED_OPERATORS), "modules": {}}
    previous = json.loads(args.rerun_survivors.read_text()) if args.rerun_survivors else None
    if previous:
        report.update(lines_per_module=previous["lines_per_module"], seed=previous["seed"],
                      rerun_of=f"{args.rerun_survivors.name} (commit {previous['commit']})")
        names = [n for n in names if n in previous["modules"]]
    try:
        for name in names:
            report["modules"][name] = run_module(name, MODULES[name], copy, work, args.lines, args.seed,
                                                 previous["modules"][name] if previous else None)
            out.write_text(json.dumps(report, indent=1) + "\n")  # after each module: a stop keeps the rest
    finally:
        if not args.keep:
            shutil.rmtree(copy, ignore_errors=True)
    md = write_markdown(report, load_judgements(), out.with_suffix(".md"))
    print(md.read_text())


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


__all__ = ["MODULES", "judgement_key"]

if __name__ == "__main__":
    main()
