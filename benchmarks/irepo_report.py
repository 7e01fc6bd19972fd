"""Tables, plots and the Markdown/JSON report of ``benchmarks/irepo.py`` (kept apart so the runner reads top to bottom)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from slimlab.core.io import atomic_write_text
from slimlab.core.machine import describe_machine
from slimlab.core.plots import bar_plot, line_plot

METHODS = ("irepo", "dpo", "ipo", "soft_dpo")


def interpolate_at(points, target):
    """Piecewise-linear value at KL = target through (KL, value) points sorted by KL (ends held flat)."""
    points = sorted(points)
    if target <= points[0][0]:
        return points[0][1]
    for (k0, v0), (k1, v1) in zip(points, points[1:]):
        if k0 <= target <= k1:
            return v0 + (v1 - v0) * (target - k0) / max(k1 - k0, 1e-12)
    return points[-1][1]


def summarise(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def matched_results(args, runs, sft_rows):
    """Per-method values at one KL budget that every method's beta sweep reaches (mean curve over seeds)."""
    mean_kl = {(m, b): statistics.mean(r["kl"] for r in runs if r["method"] == m and r["beta"] == b)
               for m in args.methods for b in args.betas}
    target = min(max(mean_kl[m, b] for b in args.betas) for m in args.methods)
    results = {}
    for method in args.methods:
        per_seed = {"true_reward": [], "win_rate": []}
        for sft in sft_rows:
            rows = [r for r in runs if r["method"] == method and r["seed"] == sft["seed"]]
            for key in per_seed:
                per_seed[key].append(interpolate_at([(0.0, sft[key])] + [(r["kl"], r[key]) for r in rows], target))
        nearest = min(args.betas, key=lambda b: abs(mean_kl[method, b] - target))
        at_beta = [r for r in runs if r["method"] == method and r["beta"] == nearest]
        results[method] = {"true_reward": summarise(per_seed["true_reward"]), "win_rate": summarise(per_seed["win_rate"]),
                           "nearest_beta": nearest, "kl_at_nearest_beta": summarise([r["kl"] for r in at_beta])}
        for key in ("implicit_accuracy", "calibration_corr", "calibration_mse", "true_reward", "win_rate"):
            results[method][f"{key}_at_nearest_beta"] = summarise([r[key] for r in at_beta])
    return target, mean_kl, results


def frontier_table(args, runs, sft_rows, mean_kl, levels=(1.0, 2.0, 4.0, 6.0, 8.0)):
    """{KL level: {method: summary of true reward}} for every level a method's mean sweep reaches."""
    table = {}
    for level in levels:
        table[level] = {}
        for method in args.methods:
            if max(mean_kl[method, b] for b in args.betas) < level:
                continue  # no extrapolation beyond the sweep
            values = []
            for sft in sft_rows:
                rows = [r for r in runs if r["method"] == method and r["seed"] == sft["seed"]]
                values.append(interpolate_at([(0.0, sft["true_reward"])] + [(r["kl"], r["true_reward"]) for r in rows], level))
            table[level][method] = summarise(values)
    return table


def machine() -> str:
    return f"{describe_machine()}, {os.cpu_count()} logical CPUs"


def spread_ratio(results, key):
    first, second = results["irepo"][key], results["dpo"][key]
    spread = max(first["std"], second["std"])
    gap = first["mean"] - second["mean"]
    if spread > 0:
        return gap / spread
    # one seed (or identical seeds): no spread to compare with, so only the sign of the gap is known
    return float("inf") if gap > 0 else (float("-inf") if gap < 0 else 0.0)


def rewrite_report(out: Path) -> int:
    """Re-derive every table and plot from the stored per-run rows (e.g. after editing the report text)."""
    stored = json.loads((out / "irepo.json").read_text())
    args = argparse.Namespace(methods=sorted({r["method"] for r in stored["runs"]}, key=list(METHODS).index),
                              betas=stored["betas"], seeds=stored["seeds"], corpus=stored["corpus"],
                              quick=False)
    settings = argparse.Namespace(**stored["settings"])
    report = build_report(args, settings, stored["runs"], stored["sft_runs"], stored["tabular"],
                          stored["pretrain_seconds"], stored["total_seconds"], out, stored["command"], stored["machine"])
    print(f"rewrote {report}")
    return 0


def build_report(args, settings, runs, sft_rows, tabular, pretrain_seconds, total_seconds, out, command=None,
                 machine_text=None):
    out.mkdir(parents=True, exist_ok=True)
    target, mean_kl, results = matched_results(args, runs, sft_rows)
    command = command or " ".join(["python benchmarks/irepo.py", *sys.argv[1:]])
    summary = {"command": command, "machine": machine_text or machine(), "target_kl": target, "seeds": args.seeds, "betas": args.betas,
               "settings": vars(settings), "corpus": args.corpus, "pretrain_seconds": pretrain_seconds,
               "total_seconds": total_seconds, "sft": {k: summarise([r[k] for r in sft_rows]) for k in ("true_reward", "kl")}}
    for method in args.methods:
        summary[f"{method}_true_reward"] = results[method]["true_reward"]["mean"]
        summary[f"{method}_true_reward_std"] = results[method]["true_reward"]["std"]
        summary[f"{method}_win_rate"] = results[method]["win_rate"]["mean"]
        summary[f"{method}_win_rate_std"] = results[method]["win_rate"]["std"]
        summary[f"kl_{method}"] = target  # every method is read off its reward-KL curve at the same KL
    if {"irepo", "dpo"} <= set(args.methods):
        summary["irepo_minus_dpo_true_reward_over_spread"] = spread_ratio(results, "true_reward")
        summary["irepo_minus_dpo_win_rate_over_spread"] = spread_ratio(results, "win_rate")
    summary["matched"] = results
    summary["frontier"] = {str(level): row for level, row in frontier_table(args, runs, sft_rows, mean_kl).items()}
    summary["tabular"] = tabular
    summary["runs"] = runs
    summary["sft_runs"] = sft_rows

    prefix = "irepo"
    frontier = {}
    for method in args.methods:
        points = sorted((mean_kl[method, b], statistics.mean(r["true_reward"] for r in runs if r["method"] == method and r["beta"] == b))
                        for b in args.betas)
        points = [(0.0, summary["sft"]["true_reward"]["mean"])] + points
        frontier[method] = ([k for k, _ in points], [v for _, v in points])
    line_plot(frontier, out / f"{prefix}_frontier.png", "true reward vs KL to the SFT model (mean over seeds)",
              "KL(pi || pi_sft), nats per response", "mean true reward")
    bar_plot({m: results[m]["true_reward"]["mean"] for m in args.methods}, out / f"{prefix}_true_reward.png",
             f"true reward at KL = {target:.2f}", "true reward", errors={m: results[m]["true_reward"]["std"] for m in args.methods})
    bar_plot({m: results[m]["win_rate"]["mean"] for m in args.methods}, out / f"{prefix}_win_rate.png",
             f"win rate vs SFT at KL = {target:.2f}", "oracle win rate", errors={m: results[m]["win_rate"]["std"] for m in args.methods})
    atomic_write_text(out / f"{prefix}.json", json.dumps(summary, indent=2, default=float) + "\n")
    atomic_write_text(out / f"{prefix}.md", markdown(summary, results, runs, args, settings))
    return out / f"{prefix}.md"


def markdown(summary, results, runs, args, settings):
    f = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    lines = ["# iREPO benchmark: soft-preference regression vs DPO, IPO and soft-label DPO", "",
             f"Command: `{summary['command']}` (total {summary['total_seconds'] / 60:.1f} min, "
             f"pre-training {summary['pretrain_seconds']:.0f} s)  ",
             f"Machine: {summary['machine']}", "",
             "## Set-up", "",
             (f"- Policy: LlamaForCausalLM ({settings.layers} layers, hidden {settings.hidden}, byte-level BPE vocabulary 512) "
              f"pre-trained in the run for {settings.pretrain_steps} steps on spoken lines of the {args.corpus} corpus; "
              "prompts are the first two words of a line." if getattr(settings, "policy", None) in (None, "pre-trained in the run")
              else f"- Policy: `{settings.policy}` as given (no pre-training); prompts are the first two words of a "
                   f"line of the {args.corpus} corpus."),
             "- Hidden true reward: count of lexicon words (love, good, sweet, thee, thou, thy, lord, ...) minus 0.1 per word beyond 8, -1 for an empty response. Annotator: 5 simulated "
             "raters, Bradley-Terry with tau = 1 and personal position biases b_k ~ N(0, 0.3^2), responses shown in random "
             "order; p_hat = (k + 0.5) / 6, clipped to [0.02, 0.98].",
             f"- Loop: {settings.rounds} rounds x {settings.prompts_per_round} fresh prompts, K = 4 samples at temperature 0.8, "
             f"max {settings.max_new_tokens} new tokens, pairs: {settings.pairs_mode} K(K-1)/2 per prompt, reference = policy at the "
             f"start of the round, 2 epochs, batch 16, AdamW lr {settings.lr}. Identical for all methods; only the loss and "
             "the label (soft p_hat vs its majority sign) differ.",
             f"- Evaluation on {settings.eval_prompts} held-out prompts x 4 samples at temperature 1: true reward, win rate "
             "vs the SFT model under the oracle (exact sigmoid(r - r_sft) averaged), KL(pi || pi_sft) estimated from the "
             "samples, and implicit-reward accuracy / calibration of beta * log(pi / pi_sft) on fixed held-out SFT pairs "
             "against the oracle logit r - r'.",
             f"- Each method is swept over beta in {args.betas}; values are read off each seed's reward-vs-KL curve "
             f"(SFT at KL 0, then the sweep, linear in between) at the KL every method reaches: **KL = {summary['target_kl']:.3f}**. "
             f"Seeds {args.seeds}; mean ± std across seeds.", "",
             "## Language-model level: results at matched KL", "",
             "| method | true reward | win rate vs SFT | beta nearest the KL | KL there | implicit-reward acc. | calib. corr | calib. MSE |",
             "|---|---|---|---|---|---|---|---|"]
    for m in args.methods:
        r = results[m]
        lines.append(f"| {m} | {f(r['true_reward'])} | {f(r['win_rate'])} | {r['nearest_beta']} | {f(r['kl_at_nearest_beta'])} | "
                     f"{f(r['implicit_accuracy_at_nearest_beta'])} | {f(r['calibration_corr_at_nearest_beta'])} | "
                     f"{f(r['calibration_mse_at_nearest_beta'])} |")
    sft = summary["sft"]["true_reward"]
    lines += ["", f"SFT model: true reward {sft['mean']:.3f} ± {sft['std']:.3f}.", ""]
    if "irepo_minus_dpo_true_reward_over_spread" in summary:
        ratio, win_ratio = summary["irepo_minus_dpo_true_reward_over_spread"], summary["irepo_minus_dpo_win_rate_over_spread"]
        verdict = "holds" if ratio >= 1 and win_ratio >= 1 else ("holds for true reward only" if ratio >= 1 else "does **not** hold")
        if len(args.seeds) < 2:
            verdict = "cannot be judged with one seed (no spread)"
        lines += [f"(iREPO - DPO) / max std, true reward: **{ratio:.2f}**; win rate: **{win_ratio:.2f}**. "
                  f"The target (iREPO at least DPO, beyond the seed spread, i.e. >= 1) {verdict} in this run.", ""]
    lines += ["True reward along the reward-KL frontier (each seed's curve read at the KL; blank where a method's "
              "sweep does not reach it):", "", "| KL | " + " | ".join(args.methods) + " |", "|---" * (len(args.methods) + 1) + "|"]
    for level, row in summary["frontier"].items():
        lines.append(f"| {float(level):g} | " + " | ".join(f(row[m]) if m in row else "" for m in args.methods) + " |")
    lines += ["", "![frontier](irepo_frontier.png) ![reward](irepo_true_reward.png) ![win rate](irepo_win_rate.png)", "",
              "## Every run", "", "| method | beta | seed | true reward | win rate | KL | impl. acc. | calib. corr | words | s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['method']} | {r['beta']} | {r['seed']} | {r['true_reward']:.3f} | {r['win_rate']:.3f} | {r['kl']:.3f} | "
                     f"{r['implicit_accuracy']:.3f} | {r['calibration_corr']:.3f} | {r['mean_words']:.1f} | {r['seconds']:.0f} |")
    t = summary["tabular"]
    lines += ["", "## Exact level: softmax policy over 8 fixed responses", "",
              "Hidden r ~ N(0, 1), random reference, beta = 0.5, all 28 pairs, L-BFGS to convergence; error = max over "
              "responses of |log(pi / pi_ref) - (r / beta - log Z)|, the distance to the KL-regularised optimum.", "",
              "| quantity | mean ± std over seeds |", "|---|---|",
              f"| iREPO error, exact preferences | {t['irepo_error']['mean']:.2e} ± {t['irepo_error']['std']:.1e} |",
              f"| hard-label DPO error, exact preferences | {f(t['dpo_error'])} |",
              f"| DPO probability of the best response (optimum: {f(t['optimal_best_probability'])}) | {f(t['dpo_best_probability'])} |",
              f"| iREPO max margin / max target | {f(t['irepo_max_margin'])} / {f(t['max_abs_target'])} |"]
    lines += [f"| iREPO error with {key.rsplit('_', 1)[1]} votes per pair | {f(value)} |"
              for key, value in t.items() if key.startswith("irepo_error_votes_")]
    lines += ["", "## Notes", "", NOTES]
    return "\n".join(lines) + "\n"


NOTES = """- This checks the mechanism on a tiny model with synthetic preferences; it says nothing about the paper's
  Phi-2 / Mistral-7B results (which we have not reproduced).
- The exact level is where the method's claim is cleanest: with exact preferences iREPO lands on
  pi_ref * exp(r / beta) / Z to float precision and its margins never exceed |z|, while hard-label DPO puts all mass
  on one response; with finite votes iREPO's error shrinks as votes grow.
- On the language model, soft labels help in the mean at KL 5-6 (soft-label DPO, then iREPO, above DPO and IPO; at
  KL <= 4 all four are within noise of each other), but the seed spread (3 seeds, 32 held-out prompts x 4 samples, 96 training prompts) is as large as the gaps, so
  the iREPO-over-DPO target is not met beyond the spread. What was tried before this run: lr 1e-3 (Adam then
  drifts the policy by several nats of KL without any reward gain, since its step size does not shrink with the
  gradient); a reward with a per-word length penalty (every method learned to say almost nothing); a sparse
  lexicon (no method could learn anything in 3 rounds); best/worst pairs (one pair per prompt, too few steps).
  This run uses all 6 pairs per prompt and lr 3e-4, and extends the beta sweep to 0.02 so IPO reaches a KL
  comparable to the others. More prompts per round and more seeds are the obvious next step on a larger budget.
- Implicit-reward accuracy and calibration on held-out SFT pairs are near chance for every method: a sequence's
  log(pi / pi_sft) is a sum over tokens that grows more negative with length (every SFT token loses a little
  probability under the tuned policy), while the true reward grows with length (more chances of a lexicon word),
  so the implicit reward mostly measures length. `length_norm=true` exists for this but was not used here.
- KL is estimated on the sampled token ids (Monte Carlo over 4 x prompts samples, so small negative values are noise);
  training and the implicit-reward metrics use the decoded text re-encoded, as a trainer on text pairs sees it.
- The run used `--threads 1` because the 2 cores were shared with other jobs at the time; the default is 2.
"""
