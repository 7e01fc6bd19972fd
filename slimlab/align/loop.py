"""The iterative iREPO loop (sample K -> annotate -> soft pairs -> regress) and single-round training on a pair file.

Reference handling: reference log-probs are computed once per round, before that round's updates. With
``reference="previous"`` the reference is the policy at the start of the round, so no second model is ever
held in memory; ``reference="sft"`` keeps the initial model (a frozen copy, or the adapter-disabled base
under LoRA).
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from slimlab.align.annotators import Annotation, LexiconReward, build_annotator
from slimlab.align.config import IREPOConfig
from slimlab.align.data import Pair, pair_row, read_pairs, read_prompts, write_jsonl
from slimlab.align.preferences import check_matrix, choose_pairs, preference_logit
from slimlab.align.policy import check_prompt_lengths, load_policy, sample_responses
from slimlab.align.trainer import map_sharded, reference_logps, train_round
from slimlab.core.distributed import barrier, init_from_environment, is_main_process, rank
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory, check_output_folder
from slimlab.core.rundir import RunDirectory
from slimlab.core.runtime import seed_all, select_device

Annotator = Callable[[str, Sequence[str]], Annotation]
HARD_LABEL_METHODS = ("dpo", "ipo")


def annotate_pairs(prompts: Sequence[str], responses: Sequence[Sequence[str]], annotator: Annotator,
                   cfg: IREPOConfig) -> list[Pair]:
    """Label every prompt's K responses and keep the configured pairs with their soft targets."""
    pairs = []
    for prompt, group in zip(prompts, responses):
        annotation = annotator(prompt, list(group))
        if not isinstance(annotation, Annotation):
            raise SlimlabError(f"annotator {type(annotator).__name__} returned {type(annotation).__name__}, "
                               "expected an Annotation")
        probability = check_matrix(annotation.probability, len(group), f"annotator {type(annotator).__name__}")
        for choice in choose_pairs(probability, list(group), cfg.pairs_mode):
            target = float(preference_logit(choice.probability, cfg.clip_eps))
            if cfg.method in HARD_LABEL_METHODS and choice.probability == 0.5:
                continue  # a tie has no majority: hard-label baselines drop it
            pairs.append(Pair(prompt, group[choice.chosen], group[choice.rejected], choice.probability, target))
    return pairs


def attach_lora(model, cfg: IREPOConfig):
    if cfg.lora_rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model
    settings = LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0,
                          target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(model, settings)


def make_optimizer(model, cfg: IREPOConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)


def round_reference(model, initial_model, cfg: IREPOConfig):
    """Context yielding the model whose log-probs are this round's reference."""
    if cfg.reference == "previous":
        return contextlib.nullcontext(model)
    if cfg.lora_rank > 0:
        @contextlib.contextmanager
        def base():
            with model.disable_adapter():
                yield model
        return base()
    return contextlib.nullcontext(initial_model)


def align_policy(model, tokenizer, prompt_pool: Sequence[str], annotator: Annotator, cfg: IREPOConfig,
                 run: RunDirectory | None = None, round_callback: Callable | None = None):
    """Run ``cfg.rounds`` rounds on an already loaded policy; returns the trained model (peft-wrapped under LoRA)."""
    seed_all(cfg.seed)
    model = attach_lora(model, cfg)
    initial_model = None
    if cfg.reference == "sft" and cfg.lora_rank <= 0:
        initial_model = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = make_optimizer(model, cfg)
    step = 0
    for round_index in range(cfg.rounds):
        started = time.perf_counter()
        start = (round_index * cfg.prompts_per_round) % len(prompt_pool)
        prompts = [prompt_pool[(start + i) % len(prompt_pool)] for i in range(cfg.prompts_per_round)]
        seed = cfg.seed * 1_000_003 + round_index * 1009 + rank()  # each rank samples its own share
        responses = map_sharded(prompts, lambda shard: sample_responses(
            model, tokenizer, shard, cfg.samples_per_prompt, cfg.temperature, cfg.max_new_tokens, seed) if shard else [])
        # Every rank annotates everything the same way (seeded annotators), so the pair lists agree.
        pairs = annotate_pairs(prompts, responses, annotator, cfg)
        if not pairs:
            raise SlimlabError(f"round {round_index}: no usable pairs (all responses identical or tied); "
                               "raise temperature or samples_per_prompt")
        if run is not None and run.writer:
            folder = run.path / "rounds" / f"round_{round_index}"
            write_jsonl(folder / "samples.jsonl", ({"prompt": p, "responses": r} for p, r in zip(prompts, responses)))
            write_jsonl(folder / "pairs.jsonl", (pair_row(pair) for pair in pairs))
        with round_reference(model, initial_model, cfg) as reference_model:
            ref_logps = reference_logps(reference_model, tokenizer, pairs, cfg.length_norm)  # [N, 2]
        history = train_round(model, tokenizer, pairs, ref_logps, cfg, optimizer, round_index)
        step = log_round(run, history, pairs, responses, round_index, step, time.perf_counter() - started)
        if round_callback is not None:
            round_callback(round_index, model)
    return model


def log_round(run: RunDirectory | None, history: list[dict], pairs: list[Pair], responses, round_index: int,
              step: int, seconds: float) -> int:
    """Log every step and the round summary; ``pairs`` is never empty (callers refuse a round without pairs)."""
    if run is None:
        return step + len(history)
    for row in history:
        step += 1
        run.log(step=step, **{key: value for key, value in row.items() if key not in ("round", "epoch")})
    last_epoch = [row for row in history if row["epoch"] == history[-1]["epoch"] and "loss" in row]
    summary = {key: sum(row[key] for row in last_epoch) / len(last_epoch) for key in last_epoch[0] if key not in ("round", "epoch")}
    words = [len(text.split()) for group in responses for text in group]
    run.log(iteration=round_index, pairs=len(pairs), mean_target=sum(p.target for p in pairs) / len(pairs),
            mean_response_words=sum(words) / max(1, len(words)), seconds=seconds, **summary)
    return step


def save_policy(model, tokenizer, out_dir: Path, lora: bool, inputs: tuple = ()) -> Path:
    """Write ``model/`` (plain transformers folder, LoRA merged) and ``adapter/`` under LoRA; rank 0, atomically,
    never over one of ``inputs`` (the policy and data files the run read)."""
    target = out_dir / "model"
    if is_main_process():
        if lora:
            with atomic_directory(out_dir / "adapter", overwrite=True, inputs=inputs) as folder:
                model.save_pretrained(folder)
            model = model.merge_and_unload()
        with atomic_directory(target, overwrite=True, inputs=inputs) as folder:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
    barrier()
    return target


def _prepare(cfg: IREPOConfig):
    init_from_environment()
    device = select_device(cfg.device)
    model, tokenizer = load_policy(cfg.policy, device, cfg.pad_with_eos, cfg.max_length)
    return model, tokenizer


def run_iterate(cfg: IREPOConfig, annotator: Annotator | None = None, overwrite: bool = False) -> Path:
    """Iterative iREPO end to end from a prompt file; returns the saved model folder."""
    if not cfg.prompts:
        raise SlimlabError("iterate needs prompts=<file.jsonl> with a 'prompt' field per line")
    inputs = _inputs(cfg, cfg.prompts)
    check_run_folder(cfg, overwrite, inputs)
    model, tokenizer = _prepare(cfg)
    prompts = read_prompts(cfg.prompts, tokenizer)  # inputs are checked before anything is written
    check_prompt_lengths(tokenizer, prompts, cfg.max_new_tokens, cfg.max_length, cfg.prompts)
    if annotator is None:
        annotator = build_annotator(cfg.annotator, LexiconReward(), cfg.n_raters, cfg.rater_bias_std,
                                    cfg.rater_temperature, cfg.vote_prior, cfg.aggregate, cfg.seed)
    with run_folder(cfg, overwrite, inputs) as folder:
        run = RunDirectory(folder, cfg)
        model = align_policy(model, tokenizer, prompts, annotator, cfg, run)
        plot_run(run)
        save_policy(model, tokenizer, folder, cfg.lora_rank > 0, inputs)
    return Path(cfg.out_dir) / "model"


def _inputs(cfg: IREPOConfig, data: str) -> tuple:
    """What a run reads: the policy folder (unless a built-in name) and its data file."""
    return (cfg.policy if Path(cfg.policy).exists() else "", data)


def check_run_folder(cfg: IREPOConfig, overwrite: bool, inputs: tuple) -> None:
    """Refuse, on every rank and before the slow part, an out_dir that may not be written (see :func:`run_folder`)."""
    out = Path(cfg.out_dir)
    check_output_folder(out, True, inputs)  # over an input, the current folder, or a folder slimlab did not write
    if out.exists() and not overwrite:
        raise SlimlabError(f"{out}: already holds a run; pass --overwrite to replace it, or choose another --out")


@contextlib.contextmanager
def run_folder(cfg: IREPOConfig, overwrite: bool, inputs: tuple):
    """The run folder, built in a temporary sibling that becomes ``cfg.out_dir`` only when the run finishes: a failed
    run leaves nothing behind, and a rerun (``overwrite``) replaces the old run whole instead of appending to its
    metrics. Only rank 0 writes; the other ranks get the final path, which they never write to."""
    if not is_main_process():
        yield Path(cfg.out_dir)
        return
    with atomic_directory(cfg.out_dir, overwrite=overwrite, inputs=inputs) as folder:
        yield folder


def run_train(cfg: IREPOConfig, overwrite: bool = False) -> Path:
    """One round of ``cfg.method`` on a fixed pair file (TRL columns + soft label); returns the model folder."""
    if not cfg.pairs:
        raise SlimlabError("train needs pairs=<file.jsonl> with prompt/chosen/rejected fields")
    inputs = _inputs(cfg, cfg.pairs)
    check_run_folder(cfg, overwrite, inputs)
    model, tokenizer = _prepare(cfg)
    pairs = read_pairs(cfg.pairs, tokenizer, cfg.clip_eps, cfg.vote_prior)
    for index, pair in enumerate(pairs):
        length = len(tokenizer(pair.prompt + max(pair.chosen, pair.rejected, key=len))["input_ids"]) + 2
        if length > cfg.max_length:
            raise SlimlabError(f"{cfg.pairs}: pair {index + 1} has about {length} tokens, over max_length {cfg.max_length}")
    if cfg.method in HARD_LABEL_METHODS:
        pairs = [pair for pair in pairs if pair.p_hat != 0.5]
        if not pairs:
            raise SlimlabError(f"{cfg.pairs}: every pair is a tie (p_hat 0.5), which method {cfg.method} drops as it "
                               "has no majority; nothing to train on (method irepo or soft_dpo learns from ties)")
    seed_all(cfg.seed)
    model = attach_lora(model, cfg)
    with run_folder(cfg, overwrite, inputs) as folder:
        run = RunDirectory(folder, cfg)
        ref_logps = reference_logps(model, tokenizer, pairs, cfg.length_norm)
        history = train_round(model, tokenizer, pairs, ref_logps, cfg, make_optimizer(model, cfg), 0)
        log_round(run, history, pairs, [], 0, 0, 0.0)
        plot_run(run)
        save_policy(model, tokenizer, folder, cfg.lora_rank > 0, inputs)
    return Path(cfg.out_dir) / "model"


def plot_run(run: RunDirectory) -> None:
    run.plot("step", ["loss"], "loss", "training loss per step")
    run.plot("step", ["rewards/margins", "irepo/target_mean"], "margins", "implicit-reward margin vs target")
    run.plot("iteration", ["irepo/abs_residual", "rewards/accuracies"], "rounds", "per-round fit")
