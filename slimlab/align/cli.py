"""``slimlab align pretrain|sample|label|train|iterate``: flags for the common fields, ``key=value`` for the rest.

Every field of :class:`IREPOConfig` can be given as ``key=value`` after the flags (or in ``--config`` YAML).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slimlab.align.annotators import LexiconReward, build_annotator
from slimlab.align.config import IREPOConfig
from slimlab.align.data import pair_row, read_jsonl, read_prompts, write_jsonl
from slimlab.align.loop import annotate_pairs, run_iterate, run_train
from slimlab.align.policy import check_prompt_lengths, load_policy, sample_responses
from slimlab.align.tiny_lm import corpus_lines, pretrain_causal_lm
from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError
from slimlab.core.io import check_output_folder, refuse_output_over_inputs
from slimlab.core.runtime import select_device


def _parser(prog: str, description: str, first_positional: tuple[str, str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"slimlab align {prog}", description=description)
    if first_positional is not None:  # declared before the open-ended overrides so argparse fills it first
        parser.add_argument(first_positional[0], help=first_positional[1])
    parser.add_argument("--config", help="YAML file of IREPOConfig fields")
    parser.add_argument("--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of IREPOConfig fields (e.g. beta=0.05)")
    return parser


OVERWRITE_HELP = "replace an existing run folder that slimlab wrote (without it, an existing --out is refused)"
PRETRAIN_HEADS = 4
BYTE_LEVEL_TOKENS = 256 + 3  # every byte plus BOS, EOS and PAD: the smallest vocabulary the tokenizer can have


def _config(arguments, **values) -> IREPOConfig:
    return load_config(IREPOConfig, arguments.config, arguments.overrides, device=arguments.device, **values)


def iterate_command(argv: list[str]) -> int:
    parser = _parser("iterate", "iterative iREPO: sample K responses, annotate, train on soft pairs, repeat")
    parser.add_argument("--model", help="local transformers causal LM folder (or 'smollm2')")
    parser.add_argument("--prompts", help="JSONL with a 'prompt' field per line")
    parser.add_argument("--out", help="run folder (metrics, plots, rounds/, model/), written whole at the end")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    arguments = parser.parse_intermixed_args(argv)
    cfg = _config(arguments, policy=arguments.model, prompts=arguments.prompts, out_dir=arguments.out)
    print(f"aligned model written to {run_iterate(cfg, overwrite=arguments.overwrite)}")
    return 0


def train_command(argv: list[str]) -> int:
    parser = _parser("train", "one round of iREPO (or a baseline) on a prompt/chosen/rejected JSONL with soft labels")
    parser.add_argument("--model")
    parser.add_argument("--pairs", help="JSONL: prompt, chosen, rejected and preference_logit | p_hat | votes+n_votes")
    parser.add_argument("--out", help="run folder (metrics, plots, model/), written whole at the end")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--beta", type=float)
    parser.add_argument("--lora-rank", type=int)
    arguments = parser.parse_intermixed_args(argv)
    cfg = _config(arguments, policy=arguments.model, pairs=arguments.pairs, out_dir=arguments.out,
                  beta=arguments.beta, lora_rank=arguments.lora_rank)
    print(f"trained model written to {run_train(cfg, overwrite=arguments.overwrite)}")
    return 0


def sample_command(argv: list[str]) -> int:
    parser = _parser("sample", "sample K responses per prompt from a policy")
    parser.add_argument("--model")
    parser.add_argument("--prompts")
    parser.add_argument("-k", type=int, dest="samples_per_prompt")
    parser.add_argument("--out", required=True, help="samples JSONL to write")
    arguments = parser.parse_intermixed_args(argv)
    cfg = _config(arguments, policy=arguments.model, prompts=arguments.prompts,
                  samples_per_prompt=arguments.samples_per_prompt)
    if not cfg.prompts:  # read_prompts("") would read the current folder
        raise SlimlabError("sample needs --prompts <file.jsonl> with a 'prompt' field per line")
    refuse_output_over_inputs(arguments.out, [cfg.prompts])  # before sampling, which takes the time
    model, tokenizer = load_policy(cfg.policy, select_device(cfg.device), cfg.pad_with_eos, cfg.max_length)
    prompts = read_prompts(cfg.prompts, tokenizer)
    check_prompt_lengths(tokenizer, prompts, cfg.max_new_tokens, cfg.max_length, cfg.prompts)
    responses = sample_responses(model, tokenizer, prompts, cfg.samples_per_prompt, cfg.temperature,
                                 cfg.max_new_tokens, cfg.seed)
    write_jsonl(arguments.out, ({"prompt": p, "responses": r} for p, r in zip(prompts, responses)), [cfg.prompts])
    print(f"{len(prompts)} x {cfg.samples_per_prompt} responses written to {arguments.out}")
    return 0


def label_command(argv: list[str]) -> int:
    parser = _parser("label", "annotate sampled responses and write training pairs with soft labels",
                     ("samples", "samples JSONL from `slimlab align sample`"))
    parser.add_argument("--annotator", help="sim:bt | sim:probs | oracle:bt (lexicon reward)")
    parser.add_argument("--out", required=True, help="pairs JSONL to write")
    arguments = parser.parse_intermixed_args(argv)
    cfg = _config(arguments, policy="", annotator=arguments.annotator)
    prompts, groups = [], []
    for number, row in read_jsonl(arguments.samples):
        responses = row.get("responses")
        if not isinstance(row.get("prompt"), str) or not isinstance(responses, list) or len(responses) < 2:
            raise SlimlabError(f"{arguments.samples}:{number}: need 'prompt' and a list of at least 2 'responses'")
        prompts.append(row["prompt"])
        groups.append([str(response) for response in responses])
    annotator = build_annotator(cfg.annotator, LexiconReward(), cfg.n_raters, cfg.rater_bias_std,
                                cfg.rater_temperature, cfg.vote_prior, cfg.aggregate, cfg.seed)
    pairs = annotate_pairs(prompts, groups, annotator, cfg)
    if not pairs:  # an empty pairs file would only be refused later, by train
        raise SlimlabError(f"{arguments.samples}: no pairs to write: in every row the responses are identical (or "
                           "tied, which methods dpo and ipo drop); sample more varied ones (higher temperature, "
                           "larger -k); nothing was written")
    write_jsonl(arguments.out, (pair_row(pair) for pair in pairs), [arguments.samples])
    print(f"{len(pairs)} pairs written to {arguments.out}")
    return 0


def pretrain_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab align pretrain",
                                     description="build and briefly pre-train a small Llama causal LM on offline text")
    parser.add_argument("--corpus", default="builtin", choices=["builtin", "shakespeare"])
    parser.add_argument("--out", required=True, help="model folder to write (save_pretrained format)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=96)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_intermixed_args(argv)
    _check_pretrain_flags(arguments)
    check_output_folder(Path(arguments.out), overwrite=False)  # before training, not after it
    torch.manual_seed(arguments.seed)
    folder = pretrain_causal_lm(corpus_lines(arguments.corpus), Path(arguments.out), hidden_size=arguments.hidden_size,
                                layers=arguments.layers, heads=PRETRAIN_HEADS, vocab_size=arguments.vocab_size,
                                steps=arguments.steps, seed=arguments.seed)
    print(f"model written to {folder}")
    return 0


def _check_pretrain_flags(arguments) -> None:
    for flag, value in (("--steps", arguments.steps), ("--layers", arguments.layers)):
        if value < 1:
            raise SlimlabError(f"{flag} must be at least 1, got {value}")
    # Each of the attention heads gets hidden_size / heads channels, an even number for the rotary embedding.
    if arguments.hidden_size < 1 or arguments.hidden_size % (2 * PRETRAIN_HEADS):
        raise SlimlabError(f"--hidden-size must be a positive multiple of {2 * PRETRAIN_HEADS} (an even size for each "
                           f"of the {PRETRAIN_HEADS} attention heads), got {arguments.hidden_size}")
    if arguments.vocab_size < BYTE_LEVEL_TOKENS:
        raise SlimlabError(f"--vocab-size must be at least {BYTE_LEVEL_TOKENS} (256 byte tokens and 3 special "
                           f"tokens), got {arguments.vocab_size}")
