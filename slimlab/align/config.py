"""The one config of the align family: every field is also a ``key=value`` override on the CLI."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal


@dataclass(frozen=True)
class IREPOConfig:
    """iREPO: regress beta * (implicit-reward difference) onto logit(empirical preference), round after round."""

    policy: str                          # local folder of a transformers causal LM (or "smollm2" for the GGUF one)
    prompts: str = ""                    # JSONL with a "prompt" field (string or chat message list); for iterate
    pairs: str = ""                      # JSONL with prompt/chosen/rejected (+ soft label); for train
    out_dir: str = "runs/irepo"
    method: Literal["irepo", "dpo", "ipo", "soft_dpo"] = "irepo"  # the loss; the rest of the pipeline is shared
    beta: float = 0.1                    # strength of the pull toward the reference; typically 0.01-0.3
    rounds: int = 3                      # iterations of sample -> label -> train
    prompts_per_round: int = 64          # fresh prompts drawn from the pool each round
    samples_per_prompt: int = 4          # K responses per prompt
    temperature: float = 0.8             # sampling temperature of the policy
    max_new_tokens: int = 32             # response length cap, tokens
    max_length: int = 128                # prompt + response tokens; must fit the model's positions
    pairs_mode: Literal["best_worst", "all"] = "best_worst"  # which of the K(K-1)/2 pairs to train on
    annotator: str = "sim:bt"            # sim:bt (noisy raters' votes), sim:probs (AI probabilities), oracle:bt
    n_raters: int = 5                    # simulated raters per comparison
    rater_bias_std: float = 0.3          # per-rater bias on the reward difference
    rater_temperature: float = 1.0       # Bradley-Terry temperature of the raters
    vote_prior: float = 0.5              # a in p_hat = (k + a) / (N + 2a)
    clip_eps: float = 0.02               # p_hat clipped to [eps, 1 - eps] so the logit target stays finite
    aggregate: Literal["mean", "logit_mean"] = "mean"  # how annotator probabilities are combined
    reference: Literal["previous", "sft"] = "previous"  # reference = policy at round start, or the initial model
    length_norm: bool = False            # divide each sequence log-prob by its token count
    epochs: int = 2                      # passes over each round's pairs
    batch_size: int = 16                 # pairs per optimizer step (across all processes)
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0               # max gradient norm per step; > 0 (there is no "off" value)
    lora_rank: int = 0                   # > 0 trains a LoRA adapter on q/v projections instead of all weights
    pad_with_eos: bool = False           # allow a tokenizer without pad token by padding with its EOS token
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        # Checked here, before a run writes anything: a bad value otherwise fails deep in torch (AdamW) or, worse,
        # trains wrongly without an error (grad_clip < 0 flips the gradient, 0 scales it to nothing).
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"'{field.name}' must be a finite number, got {value}")
        positive = {"beta": self.beta, "rounds": self.rounds, "prompts_per_round": self.prompts_per_round,
                    "max_new_tokens": self.max_new_tokens, "max_length": self.max_length, "epochs": self.epochs,
                    "batch_size": self.batch_size, "lr": self.lr, "n_raters": self.n_raters,
                    "temperature": self.temperature, "rater_temperature": self.rater_temperature,
                    "grad_clip": self.grad_clip}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"'{name}' must be positive, got {value}")
        not_negative = {"weight_decay": self.weight_decay, "vote_prior": self.vote_prior,
                        "rater_bias_std": self.rater_bias_std, "lora_rank": self.lora_rank}
        for name, value in not_negative.items():
            if value < 0:
                raise ValueError(f"'{name}' must be >= 0, got {value}")
        if self.samples_per_prompt < 2:
            raise ValueError(f"'samples_per_prompt' must be at least 2 to form a pair, got {self.samples_per_prompt}")
        if not 0.0 < self.clip_eps < 0.5:
            raise ValueError(f"'clip_eps' must lie in (0, 0.5), got {self.clip_eps}")
