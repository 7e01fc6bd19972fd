"""Attribute aware pooling vs the weighted-BCE baseline on synthetic pedestrians, with the spec's controls.

Arms (same trunk, steps and seeds): global head + plain BCE; global head + exp-ratio weighted BCE (the strong
baseline, DeepMAR-style weighting); region branches without context; branches + AAP (co-occurrence prior from
training labels, log-odds mix with learned lambda, and fixed lambda 0.5 / 0.7 / 0.9; the spec's linear mix as its
own arm); branches + a learned linear label-correlation layer; AAP with the oracle prior.
Controls: AAP with a shuffled co-occurrence prior, and the main arms on the independent-attribute generator.
Context isolation: baseline, branches and AAP again on a trunk with a local receptive field (each feature sees its
own body region only), on both generators: there, attributes of other regions reach a branch only through AAP.
Real-image sanity check (qualitative, no labels): the seed-0 AAP model on HOG person crops of OpenCV's vtest.avi,
when the video is present (see benchmarks/par_vtest.py for where it comes from).
Writes docs/benchmarks/par.md, par.json and PNG plots.

    python benchmarks/par.py            # full run (3 seeds)
    python benchmarks/par.py --quick    # smoke run
    python benchmarks/par.py --vtest DIR/usr/share/doc/opencv-doc/examples/data/vtest.avi
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from par_vtest import DEBIAN_VTEST, default_vtest, sanity_check  # noqa: E402

from slimlab.core.machine import machine_facts  # noqa: E402
from slimlab.par.synthetic import sample_attribute_labels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"
METRICS = ("mA", "accuracy", "precision", "recall", "f1", "weak_mA", "ece")
# name -> (dataset variant, config overrides)
ARMS = {
    "global_bce": ("correlated", ["head=global", "loss_weighting=none"]),
    "baseline_wbce": ("correlated", ["head=global"]),
    "branches": ("correlated", ["head=branches"]),
    "aap": ("correlated", ["head=aap"]),
    "correlation_layer": ("correlated", ["head=correlation"]),
    "aap_oracle_prior": ("correlated", ["head=aap", "prior=oracle"]),
    "aap_lambda_0.5": ("correlated", ["head=aap", "mixing=0.5"]),  # the spec's fixed-lambda sweep
    "aap_lambda_0.7": ("correlated", ["head=aap", "mixing=0.7"]),
    "aap_lambda_0.9": ("correlated", ["head=aap", "mixing=0.9"]),
    "aap_shuffled_prior": ("correlated", ["head=aap", "prior=shuffled"]),
    "baseline_wbce_independent": ("independent", ["head=global"]),
    "aap_independent": ("independent", ["head=aap"]),
    "branches_independent": ("independent", ["head=branches"]),  # does the shrink come with the branches alone?
    "baseline_wbce_low_data": ("correlated", ["head=global", "train_count=500"]),
    "branches_low_data": ("correlated", ["head=branches", "train_count=500"]),
    "aap_low_data": ("correlated", ["head=aap", "train_count=500"]),
    "baseline_wbce_identity_overlap": ("correlated", ["head=global", "identity_disjoint=false"]),
    "aap_identity_overlap": ("correlated", ["head=aap", "identity_disjoint=false"]),
    "aap_linear": ("correlated", ["head=aap", "combine=linear"]),  # the spec's formula, p^ = lambda p + (1 - lambda) p~
    # Local receptive field: a branch's features see its own region, so context from the others is AAP's alone.
    "baseline_wbce_local": ("correlated", ["head=global", "receptive_field=local"]),
    "branches_local": ("correlated", ["head=branches", "receptive_field=local"]),
    "aap_local": ("correlated", ["head=aap", "receptive_field=local"]),
    "aap_shuffled_prior_local": ("correlated", ["head=aap", "prior=shuffled", "receptive_field=local"]),
    "aap_linear_local": ("correlated", ["head=aap", "combine=linear", "receptive_field=local"]),
    "baseline_wbce_local_independent": ("independent", ["head=global", "receptive_field=local"]),
    "branches_local_independent": ("independent", ["head=branches", "receptive_field=local"]),
    "aap_local_independent": ("independent", ["head=aap", "receptive_field=local"]),
}
ONE_SEED = ("baseline_wbce_identity_overlap", "aap_identity_overlap")  # illustrates the split effect only


def run_one(job: tuple[str, int, list[str], str]) -> tuple[str, int, dict, float]:
    name, seed, overrides, out_dir = job
    torch.set_num_threads(1)
    os.environ["SLIMLAB_QUIET"] = "1"
    from slimlab.core.config import load_config
    from slimlab.par.config import ParTrainConfig
    from slimlab.par.recipes.train import main

    started = time.perf_counter()
    cfg = load_config(ParTrainConfig, None, overrides + [f"seed={seed}", f"data_seed={seed}", "device=cpu",
                                                         f"out_dir={out_dir}/{name}-{seed}"])
    result = main(cfg)
    extra = {}
    if cfg.head == "aap" and cfg.mixing == "learned":
        state = torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=True)["model"]
        extra["learned_lambda_mean"] = float(torch.sigmoid(state["pooling.lambda_logits"]).mean())
    kept = {key: result[key] for key in METRICS if key in result}
    kept["per_attribute_mA"] = result["per_attribute_mA"]
    return name, seed, {**kept, **extra}, time.perf_counter() - started


def speed_and_size(settings: list[str]) -> dict:
    """Parameters and CPU ms per image (batch 64, one thread) per head."""
    from slimlab.par.model import create_model, parameter_count
    from slimlab.par.synthetic import ATTRIBUTE_TO_BRANCH

    torch.set_num_threads(1)
    width = int(next(s.split("=")[1] for s in settings if s.startswith("width=")))
    images = torch.randn(64, 3, 64, 32)
    table = {}
    for head, trunk in [(head, "wide") for head in ("global", "branches", "aap", "correlation")] + [
            (head, "local") for head in ("global", "branches", "aap")]:
        model = create_model(head, ATTRIBUTE_TO_BRANCH, width=width, receptive_field=trunk).eval()
        with torch.no_grad():
            model(images)
            started = time.perf_counter()
            for _ in range(5):
                model(images)
        table[head if trunk == "wide" else f"{head} (local trunk)"] = {"parameters": parameter_count(model), "cpu_ms_per_image": (time.perf_counter() - started) / 5 / 64 * 1000}
    return table


def summarise(runs: dict[str, dict[int, dict]]) -> dict:
    summary = {}
    for name, by_seed in runs.items():
        entry = {"seeds": sorted(by_seed)}
        for key in METRICS:
            values = [by_seed[s][key] for s in sorted(by_seed) if key in by_seed[s]]
            if values:
                entry[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                              "values": values}
        summary[name] = entry
    return summary


def gain(summary: dict, method: str, baseline: str) -> tuple[float, float]:
    """(mean mA difference, that difference over the larger of the two seed standard deviations)."""
    a, b = summary[method]["mA"], summary[baseline]["mA"]
    difference = a["mean"] - b["mean"]
    spread = max(a["std"], b["std"])
    return difference, difference / spread if spread > 0 else float("inf") * (1 if difference > 0 else -1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (minutes)")
    parser.add_argument("--workers", type=int, default=2, help="runs trained in parallel, one thread each")
    parser.add_argument("--out", default=str(DOCS), help="folder for par.md / par.json / plots")
    parser.add_argument("--from-json", help="only redraw par.md and the plots from an earlier par.json")
    parser.add_argument("--arms", help="comma-separated arms to train; the other arms' runs (and the real-image "
                                       "check) are taken from the par.json in --out, whose settings must match")
    parser.add_argument("--vtest", default=default_vtest(),
                        help="OpenCV's vtest.avi for the real-image sanity check (default: the Debian opencv-doc path "
                             "when installed; without it the check is skipped)")
    arguments = parser.parse_args()
    if arguments.vtest and not Path(arguments.vtest).is_file():  # before minutes of training, not after
        parser.error(f"--vtest {arguments.vtest}: no such file")
    from slimlab.par.report import write_report

    if arguments.from_json:
        write_report(json.loads(Path(arguments.from_json).read_text()), Path(arguments.out))
        return 0
    seeds = [0, 1] if arguments.quick else [0, 1, 2]
    settings = (["train_count=480", "test_count=160", "epochs=4", "width=8", "learning_rate=0.005"] if arguments.quick else
                ["train_count=8000", "test_count=2000", "epochs=8", "width=16", "learning_rate=0.002"])  # spec sizes
    settings += ["batch_size=64"]
    selected = [name.strip() for name in arguments.arms.split(",")] if arguments.arms else list(ARMS)
    if unknown := sorted(set(selected) - set(ARMS)):
        parser.error(f"--arms: unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    earlier = earlier_report(Path(arguments.out), settings, seeds) if arguments.arms else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="par-bench-") as scratch:
        jobs = [(name, seed, settings + [f"variant={variant}"] + overrides, scratch)
                for name, (variant, overrides) in ARMS.items() if name in selected
                for seed in (seeds[:1] if name in ONE_SEED else seeds)]
        runs: dict[str, dict[int, dict]] = {}
        seconds: dict[str, list[float]] = {}
        context = multiprocessing.get_context("spawn")
        with context.Pool(arguments.workers) as pool:
            for name, seed, metrics, elapsed in pool.imap_unordered(run_one, jobs):
                runs.setdefault(name, {})[seed] = metrics
                seconds.setdefault(name, []).append(elapsed)
                print(f"{name:<32} seed {seed}  mA {100 * metrics['mA']:.2f}  ({elapsed:.0f} s)", flush=True)
        vtest = earlier.get("vtest") if earlier else None
        if arguments.vtest and "aap" in selected:
            # the generator's true marginals (a large label-only sample), to read the predictions against
            prevalence = sample_attribute_labels(100_000, np.random.default_rng(1)).mean(0)
            vtest = sanity_check(arguments.vtest, Path(scratch) / f"aap-{seeds[0]}" / "checkpoint.pt", prevalence,
                                 Path(arguments.out) / "par_vtest.png")
    wall = time.perf_counter() - started
    if earlier:  # the other arms keep the earlier run's figures, in ARMS order
        previous = {name: {int(s): m for s, m in by_seed.items()} for name, by_seed in earlier["runs"].items()}
        runs = {name: runs.get(name, previous.get(name)) for name in ARMS if name in runs or name in previous}
    summary = summarise(runs)
    correlated_difference, correlated_ratio = gain(summary, "aap", "baseline_wbce")
    independent_difference, independent_ratio = gain(summary, "aap_independent", "baseline_wbce_independent")
    report = {
        "command": command(arguments),
        "machine": earlier["machine"] if earlier else machine(), "settings": settings, "seeds": seeds,
        "wall_seconds": earlier["wall_seconds"] if earlier else wall,
        "methods": summary, "runs": {name: {str(s): m for s, m in by_seed.items()} for name, by_seed in runs.items()},
        "train_seconds_mean": (earlier or {}).get("train_seconds_mean", {}) | {
            name: statistics.fmean(v) for name, v in seconds.items()},
        "aap_minus_baseline_ma": correlated_difference,
        "aap_minus_baseline_ma_over_spread": correlated_ratio,
        "aap_minus_baseline_ma_independent": independent_difference,
        "aap_minus_baseline_ma_over_spread_independent": independent_ratio,
        "aap_minus_shuffled_prior_ma": gain(summary, "aap", "aap_shuffled_prior")[0],
        "aap_minus_branches_ma": gain(summary, "aap", "branches")[0],
        "aap_minus_branches_ma_over_spread": gain(summary, "aap", "branches")[1],
        "branches_minus_baseline_ma": gain(summary, "branches", "baseline_wbce")[0],
        "aap_minus_baseline_ma_low_data": gain(summary, "aap_low_data", "baseline_wbce_low_data")[0],
        "aap_minus_branches_ma_low_data": gain(summary, "aap_low_data", "branches_low_data")[0],
        "speed_and_size": speed_and_size(settings),
    }
    optional = {  # key -> (method, reference); kept where both arms ran
        "branches_minus_baseline_ma_independent": ("branches_independent", "baseline_wbce_independent"),
        "aap_minus_branches_ma_independent": ("aap_independent", "branches_independent"),
        "aap_minus_linear_ma": ("aap", "aap_linear"),
        "aap_linear_minus_branches_ma": ("aap_linear", "branches"),
        "aap_minus_baseline_ma_local": ("aap_local", "baseline_wbce_local"),
        "aap_minus_baseline_ma_local_independent": ("aap_local_independent", "baseline_wbce_local_independent"),
        "aap_minus_branches_ma_local": ("aap_local", "branches_local"),
        "aap_minus_branches_ma_local_independent": ("aap_local_independent", "branches_local_independent"),
        "aap_linear_minus_branches_ma_local": ("aap_linear_local", "branches_local"),
        "aap_minus_shuffled_prior_ma_local": ("aap_local", "aap_shuffled_prior_local"),
    }
    for key, (method, reference) in optional.items():
        if method in summary and reference in summary:
            report[key], report[key.replace("_ma", "_ma_over_spread", 1)] = gain(summary, method, reference)
    if vtest:
        report["vtest"] = vtest
    if earlier:
        report["partial_reruns"] = earlier.get("partial_reruns", []) + [
            {"arms": selected, "wall_seconds": wall, "date": time.strftime("%Y-%m-%d"),
             "command": command(arguments) + f" --arms {','.join(selected)}"}]
    report["target_beats_baseline_beyond_spread"] = bool(correlated_ratio > 1.0)
    report["target_gain_shrinks_on_independent"] = bool(independent_difference < correlated_difference)
    report["aap_learned_lambda_mean"] = statistics.fmean(m["learned_lambda_mean"] for m in runs["aap"].values())

    write_report(report, Path(arguments.out))
    print(f"wrote {arguments.out}/par.md and par.json in {report['wall_seconds']:.0f} s")
    return 0


def earlier_report(out: Path, settings: list[str], seeds: list[int]) -> dict:
    """The full run an --arms rerun merges into; same settings and seeds, or the figures would not compare."""
    path = out / "par.json"
    if not path.is_file():
        raise SystemExit(f"--arms needs an earlier full run's {path} to merge into")
    report = json.loads(path.read_text())
    if report["settings"] != settings or report["seeds"] != seeds:
        raise SystemExit(f"--arms: {path} has settings {report['settings']} and seeds {report['seeds']}; "
                         f"this run's are {settings} and {seeds}")
    return report


def command(arguments) -> str:
    """The reproduce command; where opencv-doc was unpacked is this machine's business, shown as a placeholder."""
    line = "python benchmarks/par.py" + (" --quick" if arguments.quick else "")
    if arguments.vtest and Path(arguments.vtest) != DEBIAN_VTEST:
        line += f" --vtest {arguments.vtest}"
    return re.sub(r"\S+(?=/usr/share/doc/opencv-doc/)", "<opencv-doc>", line)


def machine() -> dict:
    return {**machine_facts(), "threads_per_run": 1, "load_average": round(os.getloadavg()[0], 1)}


if __name__ == "__main__":
    sys.exit(main())
