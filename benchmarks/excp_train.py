"""Model A of the ExCP benchmark: a GPT-NeoX-style byte-level LM trained from scratch on Shakespeare.

Every step draws its batch from a generator seeded by (seed, step) and sets its learning rate from the step
alone, so a run resumed at step s from any checkpoint sees exactly the batches and learning rates of the
uninterrupted run: the two runs differ only by what the checkpoint lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from slimlab.ckpt.state import CheckpointState, OptimizerState
from slimlab.ckpt.training import state_from_objects
from slimlab.core.text_corpus import byte_tokens, random_windows, shakespeare_plays

HELD_OUT_PLAYS = 4


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 300
    batch_size: int = 16
    context: int = 128
    checkpoint_every: int = 30
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 100
    eval_windows: int = 64        # fixed held-out windows of `context` tokens, the same for every run

    def checkpoint_steps(self) -> list[int]:
        return list(range(self.checkpoint_every, self.steps + 1, self.checkpoint_every))


@dataclass
class Corpus:
    train: torch.Tensor      # (N_train,) byte tokens
    held_out: torch.Tensor   # (N_eval,) byte tokens
    train_plays: int
    held_out_names: list[str]


def load_corpus() -> Corpus:
    """Sorted plays: all but the last four train, the last four are held out."""
    plays = shakespeare_plays()
    names = sorted(plays)
    train_names, held_names = names[:-HELD_OUT_PLAYS], names[-HELD_OUT_PLAYS:]
    train = byte_tokens("\n".join(plays[name] for name in train_names))
    held_out = byte_tokens("\n".join(plays[name] for name in held_names))
    return Corpus(train, held_out, len(train_names), held_names)


def build_model(seed: int, context: int) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=256, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=1024, max_position_embeddings=context, rotary_pct=0.25,
                           hidden_dropout=0.0, attention_dropout=0.0, tie_word_embeddings=False,
                           bos_token_id=0, eos_token_id=0)
    return GPTNeoXForCausalLM(config)


def learning_rate_at(step: int, settings: TrainSettings) -> float:
    """Linear warmup to the peak over `warmup_steps`, then cosine to zero at the last step (step is 1-based)."""
    if step <= settings.warmup_steps:
        return settings.learning_rate * step / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """One model + AdamW; `train_step(step)` is deterministic in (seed, step, current state).

    `model_factory(seed)` builds the model (default: model A from scratch); any causal LM whose output has
    `.logits` of shape (B, T, vocab) works.
    """

    def __init__(self, seed: int, settings: TrainSettings, corpus: Corpus,
                 model_factory: Callable[[int], torch.nn.Module] | None = None, eval_chunk: int = 16):
        self.seed, self.settings, self.corpus, self.eval_chunk = seed, settings, corpus, eval_chunk
        self.model_factory = model_factory
        self.model = model_factory(seed) if model_factory else build_model(seed, settings.context)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.learning_rate,
                                           betas=settings.betas, weight_decay=settings.weight_decay)
        generator = torch.Generator().manual_seed(10_007)
        self.eval_batch = random_windows(corpus.held_out, settings.eval_windows, settings.context, generator)

    def train_step(self, step: int) -> float:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        batch = random_windows(self.corpus.train, self.settings.batch_size, self.settings.context, generator)
        logits = self.model(input_ids=batch[:, :-1]).logits  # (B, T, vocab)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].reshape(-1))
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(step, self.settings)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def eval_loss(self) -> float:
        """Mean next-token cross-entropy (nats) on the fixed held-out windows."""
        total, count = 0.0, 0
        for start in range(0, self.eval_batch.shape[0], self.eval_chunk):
            batch = self.eval_batch[start:start + self.eval_chunk]      # (b, T + 1)
            logits = self.model(input_ids=batch[:, :-1]).logits         # (b, T, vocab)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].reshape(-1),
                                                     reduction="sum")
            total, count = total + float(loss), count + batch[:, 1:].numel()
        return total / count

    def snapshot(self) -> CheckpointState:
        """A deep copy of weights + optimizer state (the live tensors keep changing as training goes on)."""
        state = state_from_objects(self.model, self.optimizer)
        model = {name: tensor.clone() for name, tensor in state.model.items()}
        optimizer = OptimizerState(list(state.optimizer.param_names),
                                   {index: {key: value.clone() if isinstance(value, torch.Tensor) else value
                                            for key, value in entry.items()}
                                    for index, entry in state.optimizer.state.items()},
                                   [dict(group) for group in state.optimizer.param_groups])
        return CheckpointState(model, optimizer, dict(state.aliases), layout="torch")

    def parameter_count(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())
