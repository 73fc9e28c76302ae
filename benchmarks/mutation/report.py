"""The mutation report: score per module and every survivor with its judgement.

A survivor's judgement lives in ``judgements.json`` (hand-written, kept across runs), keyed by
:func:`judgement_key` (file, operator, the line before and after): "equivalent: <why no test can see it>" or
"gap -> test added: <test>". A survivor judged "gap -> test added" must be killed by the next run; one without
a judgement is shown as "not judged yet".
"""

from __future__ import annotations

import json
from pathlib import Path

JUDGEMENTS = Path(__file__).resolve().parent / "judgements.json"


def mutated_line(mutant: dict) -> str:
    added = [line[1:].strip() for line in mutant["diff"].splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    return added[0] if added else ""


def judgement_key(mutant: dict) -> str:
    return f"{mutant['file']} | {mutant['operator']} | {mutant['source']} | {mutated_line(mutant)}"


def load_judgements() -> dict[str, str]:
    return json.loads(JUDGEMENTS.read_text()) if JUDGEMENTS.exists() else {}


def module_score(mutants: list[dict], judgements: dict[str, str]) -> dict:
    """Counts and the score: killed (a failing test or a timeout) / non-equivalent competent mutants."""
    counts = {k: 0 for k in ("killed", "timeout", "survived", "incompetent", "equivalent")}
    for m in mutants:
        outcome = m["outcome"] if m["outcome"] in counts else "incompetent"
        if outcome == "survived" and judgements.get(judgement_key(m), "").startswith("equivalent"):
            outcome = "equivalent"
        counts[outcome] += 1
    caught = counts["killed"] + counts["timeout"]
    counted = caught + counts["survived"]
    counts["score"] = round(caught / counted, 3) if counted else None
    return counts


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def write_markdown(report: dict, judgements: dict[str, str], path: Path) -> Path:
    lines = [f"# Mutation testing of the Python core — {report['date']}", "",
             f"Commit `{report['commit']}`, {report['tool']}; {report['lines_per_module']} source lines sampled per "
             f"module (one random mutant each, seed {report['seed']}; 0 = every line); operators excluded: "
             f"{', '.join(report['excluded_operators'])}; mutants inside type annotations skipped (never "
             "evaluated). Score = killed / (run − incompetent − equivalent). How to read: docs/MUTATION.md."
             + (f" **After**: the same sample as {report['rerun_of']}, its survivors rerun once tests were added "
                "(the others keep their outcome)." if report.get("rerun_of") else ""), "",
             "| module | mutants (eligible) | run | killed | timeout | survived | equivalent | incompetent | score | "
             "time |", "|---|---|---|---|---|---|---|---|---|---|"]
    survivors = []
    for name, mod in report["modules"].items():
        c = module_score(mod["mutants"], judgements)
        score = f"{100 * c['score']:.0f}%" if c["score"] is not None else "–"
        lines.append(f"| {name} | {mod['counts']['mutants']} ({mod['counts']['eligible']}) | {len(mod['mutants'])} | "
                     f"{c['killed']} | {c['timeout']} | {c['survived']} | {c['equivalent']} | {c['incompetent']} | "
                     f"{score} | {mod['run_s'] / 60:.0f} min |")
        survivors += [(name, m) for m in mod["mutants"] if m["outcome"] == "survived"]
    lines += ["", "## Survivors", "", "| module | where | operator | line → mutant | judgement |",
              "|---|---|---|---|---|"]
    for name, m in survivors:
        verdict = judgements.get(judgement_key(m), "not judged yet")
        lines.append(f"| {name} | {m['file']}:{m['line']} | {m['operator'].removeprefix('core/')} | "
                     f"{_cell(m['source'])} → {_cell(mutated_line(m))} | {verdict} |")
    if not survivors:
        lines.append("| – | – | – | none | – |")
    path.write_text("\n".join(lines) + "\n")
    return path
