"""The results table of benchmarks/README.md, generated from the JSON files in benchmarks/results/.

    python benchmarks/results_table.py                      # print the table
    python benchmarks/results_table.py --update benchmarks/README.md   # rewrite it between the markers

One row per result file: the file (linked), date, hardware, commit and the headline numbers, read from
the file itself, so the table never disagrees with the data it links.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import RESULTS

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _op_bench(d: dict) -> str:
    rows = {(r["method"], r["device"]): r for r in d["rows"]}
    parts = []
    for dev in ("cpu", "gpu"):
        op, off = rows.get(("label_pool", dev)), rows.get(("official_dense", dev))
        if op and off:
            parts.append(f"{dev}: label_pool {op['ms_per_batch']:.3g} ms vs official {off['ms_per_batch']:.3g} ms "
                         f"per batch of {d['config']['batch']}: **{off['ms_per_batch'] / op['ms_per_batch']:.0f}×**")
    return "; ".join(parts)


def _loader_bench(d: dict) -> str:
    rows = {row["method"]: row for row in d["rows"]}
    r = {m: row["img_per_s"] for m, row in rows.items()}
    relabel, c = rows["dali_relabel"], d["config"]
    # The ratios are the JSON's own (medians of per-round ratios, when recorded), not ratios of medians.
    vs_official = relabel.get("vs_torch_official", r["dali_relabel"] / r["torch_official"])
    vs_none = relabel.get("vs_dali_no_labels", r["dali_relabel"] / r["dali_no_labels"])
    ops = d.get("label_ops")
    ops_text = f"; label ops alone {ops['pct_of_batch']:.2f}% of a batch" if ops else ""
    text = (f"img/s: DALI no labels {r['dali_no_labels']:.0f}, ReLabelLoader {r['dali_relabel']:.0f}, official "
            f"{r['torch_official']:.0f}: **{vs_official:.2f}×** the official loader, **{vs_none:.3f}×** no labels"
            f"{ops_text} ({c['device']}, B={c['batch']}, C={c['num_classes']})")
    multi = [row for m, row in rows.items() if m.startswith("dali_relabel_x") and "vs_dali_relabel_x1" in row]
    if multi:
        crops = ", ".join(f"x{row['crops_per_image']} {row['crops_per_s']:.0f}" for row in multi)
        x4 = rows.get("dali_relabel_x4")
        x4_text = (f": x4 = **{x4['vs_dali_relabel_x1']:.2f}×** x1, **{x4['vs_torch_official']:.1f}×** official"
                   if x4 else "")
        ops4 = d.get("label_ops_multi_crop", {}).get("x4")
        ops4_text = f", label ops {ops4['pct_of_batch']:.2f}% of an x4 batch" if ops4 else ""
        plain = rows.get("dali_ops_x4")
        plain_text = f" (DALI's resize: x4 = {plain['vs_dali_ops_x1']:.2f}× x1)" if plain else ""
        text += f"; crops/s with n crops per image: {crops}{x4_text}{ops4_text}{plain_text}"
    if "load_average_before" in c:
        text += f" (load average {c['load_average_before'][0]:.1f} before, {c['load_average_after'][0]:.1f} after)"
    return text


def _store_bench(d: dict) -> str:
    if "store_size" not in d and "sizes" in d:  # a sizes-only run
        return "; ".join(f"{name}: float16 **{r['float16']['imagenet_projection_bytes'] / 1e9:.2f} GB** "
                         f"({100 * r['float16']['fraction_of_official_float32_data']:.1f}% of the official float32 "
                         f"data), float32 {r['float32']['imagenet_projection_bytes'] / 1e9:.2f} GB "
                         f"({100 * r['float32']['fraction_of_official_float32_data']:.1f}%)"
                         for name, r in d["sizes"].items())
    s = d["store_size"]
    return (f"{d['mode']}: ImageNet projection {s['imagenet_projection_bytes'] / 1e9:.2f} GB = "
            f"**{s['imagenet_fraction_of_official_12GB'] * 100:.0f}%** of the official 12 GB; materialize "
            f"{d['materialize']['materialize_samples_per_s']:.0f} samples/s")


def _annotate(d: dict) -> str:
    s = d["settings"]
    return (f"annotator / forward = **{d['ratio_annotate_to_forward']:.2f}** ({s['model']}@{s['size']}, "
            f"B={s['batch_size']}, {s['device']}{', AMP' if s.get('amp') else ''})")


def _kd_overhead(d: dict) -> str:
    c = d["config"]
    rows = ", ".join(f"{r['method']} **{r['overhead_pct']:+.1f}%**" for r in d["rows"] if r["method"] != "baseline")
    base = next(r["ms_per_iter"] for r in d["rows"] if r["method"] == "baseline")
    teacher = f", teacher {c['teacher']}@{c['teacher_res']}" if c.get("teacher") else ""
    load = f" (load average {c['load_average_after'][0]:.1f})" if "load_average_after" in c else ""
    return (f"{'quick: ' if c.get('quick') else ''}{c['student']} B={c['batch']}{' AMP' if c['amp'] else ''}"
            f"{teacher}: baseline {base:.0f} ms/iter; {rows}{load}")


def _build_bench(d: dict) -> str:
    s = d["seconds"]
    cuda = (f"; CUDA one arch {s['cuda_one_arch']:.0f} s ({s['cuda_one_arch_compiler_cpu_seconds']:.0f} CPU-s), all "
            f"archs {s['cuda_all_archs']:.0f} s ({s['cuda_all_archs_compiler_cpu_seconds']:.0f} CPU-s)"
            if "cuda_one_arch" in s else "")
    return (f"first use without a GPU: CPU library **{s['cpu']:.0f} s** ({s['cpu_compiler_cpu_seconds']:.0f} CPU-s){cuda}; "
            f"from cache {s['load_cached']:.2f} s; import {s['import_dali_relabel'] * 1000:.0f} ms vs DALI "
            f"{s['import_nvidia_dali'] * 1000:.0f} ms (load average {d['load_average_before'][0]:.1f})")


def _epoch_bench(d: dict) -> str:
    c = d["config"]
    rows = {r["what"]: r["batches"] for r in d["rows"]}
    restart = next(v for k, v in rows.items() if k.startswith("restart after a break"))
    return (f"{'quick: ' if c['repeats'] < 5 else ''}in batches of {c['batch']}: a new epoch "
            f"**+{d['epoch_start_overhead_batches']:.1f}** over a persistent pipeline; restart after a break "
            f"{restart:.1f}; resume at batch b: **{d['resume_cost_per_skipped_batch']:.2f}·b** (decoding them: 1·b) "
            f"({c['device']}, {c['steps_per_epoch']} batches per epoch)")


def _augment_bench(d: dict) -> str:
    c, rows = d["config"], {r["method"]: r for r in d["rows"]}
    ours = rows["relabel_timm"]
    return (f"timm's augmentations ({c['recipe']['auto_augment']}, erasing {c['recipe']['re_mode']}) in DALI: "
            f"{ours['img_per_s']:.0f} img/s = **{ours['vs_timm_pil']:.2f}×** timm's PIL DataLoader, "
            f"{ours['vs_relabel']:.2f}× ReLabelLoader without them ({c['device']}, B={c['batch']}, "
            f"{c['threads_or_workers']} threads = workers; load average {c['load_average_before'][0]:.1f})")


def _shard_bench(d: dict) -> str:
    c, rows = d["config"], {r["what"]: r for r in d["rows"]}
    loader, reader = rows["loader"], rows["reader"]
    return (f"webdataset shards ÷ ImageFolder, same images: loader **{loader['shards_vs_folder']:.2f}×** img/s "
            f"({loader['cpu_shards_vs_folder']:.2f}× CPU per image); the reader alone **{reader['shards_vs_folder']:.1f}×** "
            f"img/s ({reader['cpu_shards_vs_folder']:.2f}× CPU per image) ({c['images']} images in {c['shards']} shards, "
            f"B={c['batch']}, {c['rounds']} rounds)")


HEADLINES = {"augment_bench": _augment_bench, "build_bench": _build_bench, "shard_bench": _shard_bench,
             "epoch_bench": _epoch_bench, "op_bench": _op_bench,
             "loader_bench": _loader_bench, "store_bench": _store_bench,
             "annotate": _annotate, "kd_overhead": _kd_overhead}


def _mutation(d: dict) -> str:
    """Killed / (killed + survived) per module, before equivalents are set aside (the .md next to it has those)."""
    if d["benchmark"] == "mutation_cpp":
        rows = d["mutants"] + d.get("kernels", [])
        return f"C++ mutants killed {sum(r['outcome'] == 'killed' for r in rows)}/{len(rows)}"
    parts = []
    for name, mod in d["modules"].items():
        out = [m["outcome"] for m in mod["mutants"]]
        caught = out.count("killed") + out.count("timeout")
        parts.append(f"{name} {caught}/{caught + out.count('survived')}")
    return "killed: " + ", ".join(parts)


HEADLINES.update(mutation_python=_mutation, mutation_cpp=_mutation)


def hardware(m: dict) -> str:
    cpu = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    return f"{m['gpu']} + {cpu}" if m.get("gpu") else f"{cpu}, no GPU"


def table(results_dir: Path = RESULTS, link_prefix: str = "results/") -> str:
    lines = ["| result | date | hardware | commit | headline |", "|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        d = json.loads(path.read_text())
        try:
            headline = HEADLINES[d["benchmark"]](d)
        except (KeyError, TypeError, StopIteration, ZeroDivisionError):
            headline = "(see file)"
        lines.append(f"| [{path.name}]({link_prefix}{path.name}) | {d.get('date', '?')[:10]} | "
                     f"{hardware(d.get('machine', {}))} | {d.get('commit', '?')} | {headline} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", help=f"markdown file whose text between {BEGIN} and {END} is replaced")
    args = ap.parse_args(argv)
    text = table()
    if not args.update:
        print(text)
        return 0
    doc = Path(args.update).read_text()
    if BEGIN not in doc or END not in doc:
        print(f"{args.update}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 1
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    Path(args.update).write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"updated {args.update}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
