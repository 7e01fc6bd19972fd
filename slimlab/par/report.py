"""Markdown, JSON and PNG output of the PAR benchmark (benchmarks/par.py gathers the numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from slimlab.core.io import atomic_write_text
from slimlab.core.plots import bar_plot, save_figure
from slimlab.par.synthetic import ATTRIBUTE_NAMES, WEAK_ATTRIBUTES

LABELS = {
    "global_bce": "(i) global head, plain BCE",
    "baseline_wbce": "(ii) global head, weighted BCE (baseline)",
    "branches": "(iii) region branches, no context",
    "aap": "(iv) branches + AAP (train prior, learned lambda)",
    "correlation_layer": "(v) branches + learned label-correlation layer",
    "aap_oracle_prior": "(vi) AAP with the generator's true prior",
    "aap_lambda_0.5": "(iv) with fixed lambda 0.5",
    "aap_lambda_0.7": "(iv) with fixed lambda 0.7",
    "aap_lambda_0.9": "(iv) with fixed lambda 0.9",
    "aap_shuffled_prior": "control: AAP with a shuffled prior",
    "baseline_wbce_independent": "control: (ii) on independent attributes",
    "aap_independent": "control: (iv) on independent attributes",
    "branches_independent": "control: (iii) on independent attributes",
    "baseline_wbce_low_data": "(ii) with 500 training images",
    "branches_low_data": "(iii) with 500 training images",
    "aap_low_data": "(iv) with 500 training images",
    "baseline_wbce_identity_overlap": "(ii) identity-overlapping split (1 seed)",
    "aap_identity_overlap": "(iv) identity-overlapping split (1 seed)",
}


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    methods = report["methods"]
    atomic_write_text(out / "par.json", json.dumps(report, indent=2))
    bar_plot({name: 100 * m["mA"]["mean"] for name, m in methods.items()}, out / "par_ma.png",
             "PAR synthetic pedestrians: mA (mean over seeds, bars = seed std)", "mA (%)",
             errors={name: 100 * m["mA"]["std"] for name, m in methods.items()})
    per_attribute_plot(report, out / "par_per_attribute.png")

    def cell(name, key):
        entry = methods[name].get(key)
        return "-" if entry is None else f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"

    lines = ["# Attribute aware pooling (AAP) for pedestrian attribute recognition: benchmark", "",
             f"Reproduce: `{report['command']}` (wall time {report['wall_seconds'] / 60:.1f} min).", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['logical_cpus']} logical CPUs (shared with other "
             f"jobs while this ran: load average {report['machine'].get('load_average', '?')} at the end), torch {report['machine']['torch']}, Python {report['machine']['python']}, "
             f"one torch thread per run, two runs in parallel.", "",
             f"Data: the built-in synthetic pedestrian generator (64x32 images, {len(ATTRIBUTE_NAMES)} attributes, "
             f"{len(WEAK_ATTRIBUTES)} of them weak/occluded: "
             f"{', '.join(ATTRIBUTE_NAMES[i] for i in WEAK_ATTRIBUTES)}); settings `{' '.join(report['settings'])}`; "
             f"identity-disjoint test split unless stated; seeds {report['seeds']} (seed = training and data seed). "
             "All numbers in %, mean ± standard deviation over seeds, threshold 0.5.", "",
             "## Results", "",
             "| arm | variant | mA | accuracy | precision | recall | F1 | weak-attribute mA | ECE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in methods:
        variant = "independent" if name.endswith("independent") else "correlated"
        lines.append(f"| {LABELS.get(name, name)} | {variant} | " + " | ".join(cell(name, k) for k in
                     ("mA", "accuracy", "precision", "recall", "f1", "weak_mA", "ece")) + " |")
    ratio = report["aap_minus_baseline_ma_over_spread"]
    lines += ["", "## Targets", "",
              f"* **AAP beats the weighted-BCE baseline beyond the seed spread (correlated set):** mA gain "
              f"{100 * report['aap_minus_baseline_ma']:+.2f} points; gain / max(seed std) = "
              f"`aap_minus_baseline_ma_over_spread` = **{ratio:.2f}** -> "
              f"{'holds' if report['target_beats_baseline_beyond_spread'] else 'missed'} (needs > 1).",
              f"* **The gain shrinks on the independent-attribute control:** gain there "
              f"{100 * report['aap_minus_baseline_ma_independent']:+.2f} points (ratio "
              f"{report['aap_minus_baseline_ma_over_spread_independent']:.2f}) vs {100 * report['aap_minus_baseline_ma']:+.2f} "
              f"on the correlated set -> {'holds' if report['target_gain_shrinks_on_independent'] else 'missed'}.",
              f"* Shuffled co-occurrence prior: mA(AAP, training prior) - mA(AAP, shuffled prior) = "
              f"{100 * report['aap_minus_shuffled_prior_ma']:+.2f} points.",
              f"* Context vs architecture: mA(AAP) - mA(same branches without context) = "
              f"{100 * report['aap_minus_branches_ma']:+.2f} points (ratio to the seed spread "
              f"{report['aap_minus_branches_ma_over_spread']:.2f})" + (
                  f"; the same branches without context gain {100 * report['branches_minus_baseline_ma']:+.2f} "
                  f"points over the baseline on the correlated set and "
                  f"{100 * report['branches_minus_baseline_ma_independent']:+.2f} on the independent one."
                  if "branches_minus_baseline_ma_independent" in report else "."),
              f"* Low-data regime (500 training images): AAP vs baseline {100 * report['aap_minus_baseline_ma_low_data']:+.2f}, "
              f"AAP vs branches {100 * report['aap_minus_branches_ma_low_data']:+.2f} mA points.",
              *lambda_sweep(methods), *correlation_benefit(report), "",
              *reading(report), "",
              "## Per-attribute mA (correlated set, mean over seeds)", "",
              "| attribute | weak | baseline (ii) | branches (iii) | AAP (iv) |", "|---|---|---|---|---|"]
    per = {name: per_attribute_mean(report["runs"], name)
           for name in ("baseline_wbce", "branches", "aap") if name in report["runs"]}
    for i, attribute in enumerate(ATTRIBUTE_NAMES):
        lines.append(f"| {attribute} | {'yes' if i in WEAK_ATTRIBUTES else ''} | "
                     + " | ".join(f"{100 * per[n][i]:.1f}" if n in per else "-" for n in ("baseline_wbce", "branches", "aap")) + " |")
    lines += ["", "## Size and CPU speed (batch 64, one thread)", "", "| head | parameters | CPU ms / image |", "|---|---|---|"]
    lines += [f"| {head} | {v['parameters']:,} | {v['cpu_ms_per_image']:.3f} |" for head, v in report["speed_and_size"].items()]
    lines += ["", "![mA per arm](par_ma.png)", "", "![per-attribute mA](par_per_attribute.png)", ""]
    lines += vtest_section(report.get("vtest"))
    lines += ["## Notes", "",
              f"* {data_size_note(report['settings'])}; the trunk is the 3-stage ResNet-style CNN of "
              f"`slimlab.par.backbone` at width {dict(item.split('=', 1) for item in report['settings'])['width']}.",
              ("* The real-image sanity check on OpenCV's `vtest.avi` was not run: the opencv-doc samples were not "
               "installed (`--vtest PATH`). " if "vtest" not in report else "* ")
              + "The PETA / RAP / PA-100K loaders are tested on small files only; no labelled real PAR dataset was "
              "available offline, so there are no real-data accuracy numbers here.",
              "* The region-branch heads (iii)-(vi) carry about three times the parameters of the global head (table "
              "above), so the comparison with the baseline mixes head capacity with the method; arm (iii) holds the "
              "architecture fixed and isolates what the context adds.",
              f"* Wall time: {report['wall_seconds'] / 60:.1f} min with two runs in parallel (spec budget: 30 min); "
              f"load average {report['machine'].get('load_average', '?')} at the end of the run." + "".join(
                  f" Arms {', '.join(rerun['arms'])} rerun alone on {rerun['date']} ({rerun['wall_seconds'] / 60:.1f} "
                  f"min, `{rerun['command']}`), the other arms' figures from the full run."
                  for rerun in report.get("partial_reruns", [])),
              "* The pooling formula is a reconstruction (see the spec): the paper's code and tables were not available."]
    atomic_write_text(out / "par.md", "\n".join(lines) + "\n")


def per_attribute_mean(runs: dict, name: str) -> np.ndarray:
    """(A,) per-attribute mA of one arm, mean over its seeds."""
    return np.mean([run["per_attribute_mA"] for run in runs[name].values()], axis=0)


def vtest_section(vtest: dict | None) -> list[str]:
    """The qualitative real-image check: prediction distribution on HOG person crops (no labels exist)."""
    if not vtest:
        return []
    lines = ["## Real-image sanity check (qualitative: no labels)", "",
             f"The seed-0 AAP model on {vtest['crops']} person crops that OpenCV's default HOG detector found in "
             f"{vtest['frames_with_people']} frames (every {vtest['frame_step']}th) of `vtest.avi` (a real street scene), resized to "
             "64x32. Without labels only the distribution of the predictions can be read, here next to the synthetic "
             "prevalence; the grid shows each crop's (at most three) most likely attributes at p >= 0.5. The video comes from Debian's opencv-doc "
             "package: `apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb <opencv-doc>` (or `apt-get install "
             "opencv-doc`, then no `--vtest` is needed).", "",
             "| attribute | synthetic prevalence | mean probability on crops | share predicted (p >= 0.5) |",
             "|---|---|---|---|"]
    for name, prevalence, mean, share in zip(vtest["attributes"], vtest["train_prevalence"],
                                             vtest["mean_probability"], vtest["share_predicted"]):
        lines.append(f"| {name} | {100 * prevalence:.1f}% | {mean:.3f} | {100 * share:.1f}% |")
    return lines + ["", f"![vtest crops with predicted attributes]({vtest['grid']})", ""]


def lambda_sweep(methods: dict) -> list[str]:
    """One line over the spec's lambda values: how much of each prediction the context may carry."""
    arms = [(f"{value}", f"aap_lambda_{value}") for value in ("0.5", "0.7", "0.9")] + [("learned", "aap")]
    present = [(label, methods[name]) for label, name in arms if name in methods]
    if len(present) < 2:
        return []
    cells = [f"{label}: mA {100 * m['mA']['mean']:.2f} ± {100 * m['mA']['std']:.2f}, weak-attribute mA "
             f"{100 * m['weak_mA']['mean']:.2f}" for label, m in present]
    reference = methods.get("branches")
    tail = (f" (branches without context: mA {100 * reference['mA']['mean']:.2f}, weak-attribute mA "
            f"{100 * reference['weak_mA']['mean']:.2f})") if reference else ""
    return ["* Lambda sweep (share of each attribute's own prediction; 1 - lambda comes from the context): "
            + "; ".join(cells) + tail + "."]


def correlation_benefit(report: dict) -> list[str]:
    """How much mA each head gains from correlated attributes (correlated set minus the independent control), on
    all, weak and visible attributes: the gain over the baseline shrinks on the control only if AAP leans on the
    correlations more than the baseline does."""
    runs = report["runs"]
    pairs = {"baseline (ii)": ("baseline_wbce", "baseline_wbce_independent"), "AAP (iv)": ("aap", "aap_independent")}
    if not all(name in runs for pair in pairs.values() for name in pair):
        return []
    weak = np.isin(np.arange(len(ATTRIBUTE_NAMES)), WEAK_ATTRIBUTES)
    cells, benefit = [], {}
    for label, (correlated, independent) in pairs.items():
        # (A,) per-attribute mA, mean over seeds, correlated minus independent
        difference = per_attribute_mean(runs, correlated) - per_attribute_mean(runs, independent)
        benefit[correlated] = 100 * difference[weak].mean(), 100 * difference[~weak].mean()
        cells.append(f"{label} {100 * difference.mean():+.2f} (weak {benefit[correlated][0]:+.2f}, visible "
                     f"{benefit[correlated][1]:+.2f})")
    (aap_weak, aap_visible), (base_weak, base_visible) = benefit["aap"], benefit["baseline_wbce"]
    return ["* What correlated attributes are worth to each head (mA on the correlated set minus the independent "
            "control, points): " + "; ".join(cells) + ". On the weak attributes, where the context should act, AAP "
            f"gains {aap_weak - base_weak:+.2f} points more from the correlations than the baseline does; on the "
            f"visible ones {aap_visible - base_visible:+.2f}."]


def reading(report: dict) -> list[str]:
    """What the figures say about where the gain comes from, derived from them (not written in advance)."""
    context_gain = report["aap_minus_branches_ma"]
    context_matters = report["aap_minus_branches_ma_over_spread"] > 1 and report["aap_minus_shuffled_prior_ma"] > 0
    if context_matters:
        return ["**Reading:** the context term adds mA beyond the seed spread over the same branches, and the true "
                "prior beats the shuffled one: the gain comes (at least partly) from the attribute context."]
    correlated, independent = report["aap_minus_baseline_ma"], report["aap_minus_baseline_ma_independent"]
    shrink = (f"shrinks on independent attributes ({100 * correlated:+.2f} -> {100 * independent:+.2f} points)"
              if report["target_gain_shrinks_on_independent"] else
              f"does not shrink on independent attributes ({100 * correlated:+.2f} -> {100 * independent:+.2f} points)")
    if "branches_minus_baseline_ma_independent" in report:
        branches = (report["branches_minus_baseline_ma"], report["branches_minus_baseline_ma_independent"])
        shrink += (f", and the same branches without context change alike ({100 * branches[0]:+.2f} -> "
                   f"{100 * branches[1]:+.2f}): what the control measures is the region head's use of the attribute "
                   "correlations, not the context's")
    return ["**Reading:** the gain over the baseline comes with the multi-branch region head, not with the context: "
            f"AAP differs from the same branches without context by {100 * context_gain:+.2f} mA points and a "
            "shuffled co-occurrence prior does about as well as the true one. The gain over the baseline " + shrink
            + ". A likely reason: the trunk's receptive field covers the whole 64x32 image, so every branch already "
            "sees the other regions and can learn the correlations from the images; the learned lambda moves towards "
            f"the branches' own predictions (mean {report.get('aap_learned_lambda_mean', float('nan')):.2f}). On this "
            "data the co-occurrence prior does not help, so the reading that the gain comes from the context is "
            "**not supported**."]


def per_attribute_plot(report: dict, path: Path) -> None:
    names = [n for n in ("baseline_wbce", "branches", "aap") if n in report["runs"]]
    figure, axes = plt.subplots(figsize=(10, 4))
    x = np.arange(len(ATTRIBUTE_NAMES))
    for k, name in enumerate(names):
        values = per_attribute_mean(report["runs"], name)
        axes.bar(x + (k - 1) * 0.27, 100 * values, 0.27, label=LABELS[name])
    axes.set_xticks(x, [n + (" *" if i in WEAK_ATTRIBUTES else "") for i, n in enumerate(ATTRIBUTE_NAMES)], rotation=45,
                    ha="right")
    axes.set_ylim(40, 100)
    axes.set_ylabel("mA (%)")
    axes.set_title("Per-attribute mA on the correlated set (* = weak / occluded)")
    axes.legend(fontsize=7)
    axes.grid(axis="y", alpha=0.3)
    save_figure(figure, path)


def data_size_note(settings: list[str]) -> str:
    """The run's data size against the spec's 8,000 training / 2,000 test images."""
    values = dict(item.split("=", 1) for item in settings)
    train, test, epochs = int(values["train_count"]), int(values["test_count"]), values.get("epochs", "?")
    sizes = f"{train:,} training / {test:,} test images, {epochs} epochs"
    return (f"Data at the spec's size: {sizes}" if (train, test) == (8000, 2000)
            else f"Scaled down from the spec's 8,000 / 2,000 images: {sizes}")
