"""Assemble the tables and figures of `lvis_scale.py` from whatever runs exist.

Reads every run JSON given (files or directories of `*.json` or
`*.json.gz`), one or more
methods per file, and prints Markdown tables: AP (and accuracy for the
two-stage task) as "mean (seed 0 / seed 1 / seed 2)" with "-" for a missing
seed, the run times, and the mechanism statistics of each EQL loss and its
baseline (median positive/negative ratio per LVIS group, unclipped, and the
frequent/rare quotient of the medians). With `--figures DIR` it also draws,
from the seed-0 runs, for each (baseline, EQL) pair:

* `lvis_scale_statistics_<eql>.png` (Tan et al., Fig. 1): per category,
  sorted by LVIS training frequency, the accumulated positive and negative
  gradients and their ratio; the baseline above, the EQL loss below.
* `lvis_scale_ratio_history_<eql>.png` (Fig. 2): the mean ratio per LVIS
  group over training; the baseline left, the EQL loss right.

    python examples/lvis_tables.py docs/lvis_scale/runs --figures docs/images
"""

import argparse
import csv
import glob
import gzip
import io
import json
import os
import sys
import tempfile

import numpy as np

GROUPS = ("rare", "common", "frequent")
TWO_STAGE_COLUMNS = ("AP", "AP_r", "AP_c", "AP_f", "acc", "acc_r", "acc_c", "acc_f")
DENSE_COLUMNS = ("AP", "AP_r", "AP_c", "AP_f")
RATIO_EPSILON = 1e-10  # as the losses' ratio


def load_runs(paths):
    """`({(method, seed): row}, context)` from run JSON files or directories.

    `context` is the first run's shared data (groups, counts); a later run
    of the same (method, seed) replaces an earlier one.
    """
    files = []
    for path in paths:
        files += (sorted(glob.glob(os.path.join(path, "*.json")) + glob.glob(os.path.join(path, "*.json.gz")))
                  if os.path.isdir(path) else [path])
    runs, context = {}, None
    for path in files:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt") as handle:
            report = json.load(handle)
        if "lvis_image_counts" not in report:
            continue
        context = context or report
        for method, row in report["results"].items():
            runs[(method, report["args"]["seed"])] = {**row, "data_seconds": report["data"]["seconds"],
                                                      "file": os.path.basename(path)}
    if context is None:
        raise SystemExit(f"lvis_tables: no lvis_scale run JSON in {paths}.")
    return runs, context


def _cell(values, digits=1, scale=100.0):
    shown = [f"{scale * v:.{digits}f}" if v is not None else "-" for v in values]
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mean = f"{scale * np.mean(present):.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({' / '.join(shown)})"


def metric_table(runs, methods, columns, seeds):
    """Markdown rows `method | mean (per seed) ...` of the methods that have a run."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method in methods:
        if not any((method, seed) in runs for seed in seeds):
            continue
        cells = [_cell([runs[(method, s)].get(c) if (method, s) in runs else None for s in seeds]) for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unclipped_ratio(row):
    """positive / (negative + eps) per category, from the final sums."""
    return np.asarray(row["positive"]) / (np.asarray(row["negative"]) + RATIO_EPSILON)


def group_medians(row, groups):
    ratio = unclipped_ratio(row)
    return {g: float(np.median(ratio[groups[g]])) for g in GROUPS}


def mechanism_table(runs, pairs, groups, seeds):
    """Median unclipped ratio per group and the frequent/rare quotient, per run."""
    lines = ["| method | seed | median ratio rare | common | frequent | rare < frequent / 2 | frequent / rare |",
             "|---|---|---|---|---|---|---|"]
    for eql, baseline in pairs.items():
        for method in (baseline, eql):
            for seed in seeds:
                row = runs.get((method, seed))
                if row is None or "positive" not in row:
                    continue
                medians = group_medians(row, groups)
                quotient = medians["frequent"] / max(medians["rare"], RATIO_EPSILON)
                lines.append(f"| {method} | {seed} | {medians['rare']:.3g} | {medians['common']:.3g} | "
                             f"{medians['frequent']:.3g} | {'yes' if medians['rare'] < medians['frequent'] / 2 else 'no'} "
                             f"| {quotient:.3g} |")
    return "\n".join(lines)


def history_table(runs, pairs, groups, seed, points=4):
    """Median unclipped ratio per group at a few logged steps of each run of `seed`."""
    lines = ["| method | step | median ratio rare | common | frequent |", "|---|---|---|---|---|"]
    for eql, baseline in pairs.items():
        for method in (baseline, eql):
            row = runs.get((method, seed))
            if row is None or "history" not in row:
                continue
            history = row["history"]
            chosen = sorted(set(np.linspace(0, len(history["steps"]) - 1, points).round().astype(int)))
            for index in chosen:
                ratio = (np.asarray(history["positive"][index])
                         / (np.asarray(history["negative"][index]) + RATIO_EPSILON))
                medians = [f"{np.median(ratio[groups[g]]):.3g}" for g in GROUPS]
                lines.append(f"| {method} | {history['steps'][index]} | " + " | ".join(medians) + " |")
    return "\n".join(lines)


# The paper's ablation tables: (title, task columns, rows in the paper's order).
ABLATION_TABLES = (
    ("Table 2: Sigmoid-EQL's components (obj / obj+neg / obj+neg+pos)", TWO_STAGE_COLUMNS,
     ("bce", "sigmoid_eql_neg", "sigmoid_eql")),
    ("Table 9: EFL's focusing factor (FF) and weighting factor (WF)", DENSE_COLUMNS,
     ("focal", "efl_focusing", "efl_weighting", "efl")),
    ("Table 10: EFL's scale s (0 = focal, 8 = efl)", DENSE_COLUMNS,
     ("focal", "efl_s2", "efl_s4", "efl", "efl_s12")),
    ("Table 11: FL+EQL vs EFL", DENSE_COLUMNS, ("focal", "fl_eql", "efl")),
)


def ablation_tables(runs, groups, seeds):
    """The ablation tables of the methods that have runs, each row with its median ratios."""
    sections = []
    for title, columns, methods in ABLATION_TABLES:
        present = [m for m in methods if any((m, s) in runs for s in seeds)]
        if len(present) < 2:
            continue
        table = metric_table(runs, present, columns, seeds).split("\n")
        table[0] += " median ratio r / c / f (seed %d) |" % seeds[0]
        table[1] += "---|"
        for index, method in enumerate(present):
            row = runs.get((method, seeds[0]))
            medians = group_medians(row, groups) if row and "positive" in row else None
            table[index + 2] += (" " + " / ".join(f"{medians[g]:.3g}" for g in GROUPS) + " |") if medians else " - |"
        sections.append(f"### {title}\n\n" + "\n".join(table))
    return "\n\n".join(sections)


def time_table(runs, methods, seeds):
    lines = ["| method | seed | data (s) | training (s) | evaluation (s) | steps |", "|---|---|---|---|---|---|"]
    for method in methods:
        for seed in seeds:
            row = runs.get((method, seed))
            if row is not None:
                lines.append(f"| {method} | {seed} | {row['data_seconds']} | {row['seconds']} | "
                             f"{row.get('eval_seconds', '-')} | {row.get('steps', '-')} |")
    return "\n".join(lines)


def _png_array(figure):
    from matplotlib.image import imread

    from keras_eql.plotting import figure_to_png

    return (imread(io.BytesIO(figure_to_png(figure)))[..., :3] * 255).astype(np.uint8)


def _stack(arrays, axis):
    size = max(a.shape[1 - axis] for a in arrays)
    padded = []
    for array in arrays:
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[1 - axis] = (0, size - array.shape[1 - axis])
        padded.append(np.pad(array, pad, constant_values=255))
    return np.concatenate(padded, axis=axis)


def _save(array, path):
    from PIL import Image

    Image.fromarray(array).save(path)
    print(f"Wrote {path}")


def statistics_figure(runs, baseline, eql, lvis_counts, groups, seed, path):
    """Fig. 1: the baseline's and the EQL loss's per-category statistics.

    With a `plot_gradient_statistics` that takes `baseline=` (keras_eql
    after the figures' `groups=` work) both go in one figure, shaded by LVIS
    group; otherwise the two figures are stacked.
    """
    import inspect

    from keras_eql.plotting import plot_gradient_statistics

    def statistics(method):
        row = runs[(method, seed)]
        return {"positive": row["positive"], "negative": row["negative"], "ratio": unclipped_ratio(row)}

    steps = runs[(eql, seed)]["statistics_steps"]
    if "baseline" in inspect.signature(plot_gradient_statistics).parameters:
        figure = plot_gradient_statistics(
            statistics(eql), class_counts=lvis_counts, baseline=statistics(baseline), groups=groups,
            label=eql, baseline_label=baseline,
            title=f"{baseline} vs {eql}: accumulated gradients after {steps:.0f} steps (seed {seed})")
        _save(_png_array(figure), path)
        return
    panels = []
    for method in (baseline, eql):
        figure = plot_gradient_statistics(statistics(method), class_counts=lvis_counts)
        figure.suptitle(f"{method} (seed {seed}, {steps:.0f} steps)", x=0.005, y=0.995,
                        ha="left", va="top", fontsize="small")
        panels.append(_png_array(figure))
    _save(_stack(panels, axis=0), path)


def _history_csv(row, method, groups, path):
    """The run's ratio history in `GradientStatisticsLogger`'s CSV format."""
    group_of = {k: g for g in GROUPS for k in groups[g]}
    history = row["history"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("epoch", "step", "loss", "class", "class_name", "group", "positive", "negative", "ratio"))
        for step, ratio, positive, negative in zip(history["steps"], history["ratio"], history["positive"],
                                                   history["negative"]):
            for k, value in enumerate(ratio):
                writer.writerow((0, step, method, k, k, group_of[k], positive[k], negative[k], value))


def history_figure(runs, baseline, eql, groups, seed, path):
    """Fig. 2: the mean ratio per LVIS group during training, baseline beside EQL."""
    from keras_eql.plotting import plot_ratio_history

    panels = []
    with tempfile.TemporaryDirectory() as directory:
        for method in (baseline, eql):
            csv_path = os.path.join(directory, f"{method}.csv")
            _history_csv(runs[(method, seed)], method, groups, csv_path)
            # One loss per file; the groups are the CSV's `group` column (r/c/f).
            panels.append(_png_array(plot_ratio_history(csv_path)))
    _save(_stack(panels, axis=1), path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run JSON files or directories of them")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--figures", default=None, help="directory for the figures (seed 0 runs)")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import lvis_scale  # the method lists (imports TensorFlow)

    seeds = [int(s) for s in args.seeds.split(",")]
    runs, context = load_runs(args.runs)
    groups, lvis_counts = context["groups"], context["lvis_image_counts"]
    print("## (a) Two-stage region classification (%)\n")
    main_methods = [m for m in lvis_scale.METHODS if m not in lvis_scale.ABLATIONS]
    print(metric_table(runs, [m for m in main_methods if m in lvis_scale.TWO_STAGE_METHODS], TWO_STAGE_COLUMNS,
                       seeds))
    print("\n## (b) Dense detection (%)\n")
    print(metric_table(runs, [m for m in main_methods if m in lvis_scale.DENSE_METHODS], DENSE_COLUMNS, seeds))
    print("\n## Mechanism: final accumulated positive / negative ratio, median per LVIS group (unclipped)\n")
    print(mechanism_table(runs, lvis_scale.BASELINES, groups, seeds))
    print(f"\n## Mechanism during training (seed {seeds[0]}): median unclipped ratio per LVIS group\n")
    print(history_table(runs, lvis_scale.BASELINES, groups, seeds[0]))
    ablations = ablation_tables(runs, groups, seeds)
    if ablations:
        print("\n## Ablations\n")
        print(ablations)
    print("\n## Run times\n")
    print(time_table(runs, lvis_scale.METHODS, seeds))
    missing = [f"{m} seed {s}" for m in main_methods for s in seeds if (m, s) not in runs]
    print("\nMissing runs: " + (", ".join(missing) if missing else "none"))
    if args.figures:
        os.makedirs(args.figures, exist_ok=True)
        for eql, baseline in lvis_scale.BASELINES.items():
            if (eql, 0) in runs and (baseline, 0) in runs:
                statistics_figure(runs, baseline, eql, lvis_counts, groups, 0,
                                  os.path.join(args.figures, f"lvis_scale_statistics_{eql}.png"))
                history_figure(runs, baseline, eql, groups, 0,
                               os.path.join(args.figures, f"lvis_scale_ratio_history_{eql}.png"))


if __name__ == "__main__":
    main()
