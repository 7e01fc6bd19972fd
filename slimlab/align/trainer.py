"""One round of preference training on fixed pairs, data-parallel over torch.distributed ranks.

Every rank holds the same pair list and walks the same shuffled global batches; rank r takes every
world-size-th pair of a batch. Each rank's loss is its pairs' summed loss divided by the *global* batch
size, and gradients are summed across ranks, so N processes take exactly the step one process would.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

from slimlab.align.config import IREPOConfig
from slimlab.align.data import Pair
from slimlab.align.losses import batch_metrics, implicit_rewards, pair_losses
from slimlab.align.policy import sequence_logps, sequence_logps_batched
from slimlab.core.distributed import is_distributed, rank, world_size
from slimlab.core.progress import progress

T = TypeVar("T")
R = TypeVar("R")


def map_sharded(items: Sequence[T], function: Callable[[list[T]], list[R]]) -> list[R]:
    """Apply ``function`` to this rank's share (items r, r + W, ...) and gather the results in item order."""
    if not is_distributed():
        return function(list(items))
    size, me = world_size(), rank()
    mine = function(list(items[me::size]))
    gathered: list[list[R]] = [None] * size  # type: ignore[list-item]
    dist.all_gather_object(gathered, mine)
    ordered: list[R] = [None] * len(items)  # type: ignore[list-item]
    for owner, results in enumerate(gathered):
        ordered[owner::size] = results
    return ordered


def reference_logps(model, tokenizer, pairs: Sequence[Pair], length_norm: bool) -> torch.Tensor:
    """[N, 2] reference log-probs (chosen, rejected) of every pair, computed once per round, sharded."""
    def compute(shard: list[Pair]) -> list[tuple[float, float]]:
        if not shard:
            return []
        prompts = [pair.prompt for pair in shard] * 2
        responses = [pair.chosen for pair in shard] + [pair.rejected for pair in shard]
        values = sequence_logps_batched(model, tokenizer, prompts, responses, length_norm, description="reference")
        return list(zip(values[:len(shard)].tolist(), values[len(shard):].tolist()))
    return torch.tensor(map_sharded(pairs, compute), dtype=torch.float32).reshape(-1, 2)


def train_round(model, tokenizer, pairs: Sequence[Pair], ref_logps: torch.Tensor, cfg: IREPOConfig,
                optimizer: torch.optim.Optimizer, round_index: int) -> list[dict[str, float]]:
    """``cfg.epochs`` passes of ``cfg.method`` over ``pairs``; returns the metrics of every optimizer step."""
    device = next(model.parameters()).device
    size, me = world_size(), rank()
    parameters = [p for p in model.parameters() if p.requires_grad]
    history = []
    model.train()
    for epoch in range(cfg.epochs):
        # The same permutation on every rank: the seed, not the rank, decides the order.
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.seed * 7919 + round_index * 101 + epoch))
        batches = [order[start:start + cfg.batch_size].tolist() for start in range(0, len(pairs), cfg.batch_size)]
        for batch in progress(batches, f"train round {round_index} epoch {epoch}"):
            local = batch[me::size]
            optimizer.zero_grad(set_to_none=True)
            metrics = {}
            if local:
                prompts = [pairs[i].prompt for i in local] * 2
                responses = [pairs[i].chosen for i in local] + [pairs[i].rejected for i in local]
                policy = sequence_logps(model, tokenizer, prompts, responses, cfg.length_norm)  # [2b]
                reference = torch.cat([ref_logps[local, 0], ref_logps[local, 1]]).to(device)  # [2b]
                target = torch.tensor([pairs[i].target for i in local], dtype=policy.dtype, device=device)  # [b]
                chosen, rejected = implicit_rewards(policy, reference, cfg.beta)
                loss = pair_losses(cfg.method, chosen - rejected, target, cfg.beta).sum() / len(batch)
                loss.backward()
                metrics = batch_metrics(policy.detach(), chosen.detach(), rejected.detach(), target)
                metrics["loss"] = loss.item() * len(batch) / len(local)
            sum_gradients(parameters)
            torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip)
            optimizer.step()
            history.append({"round": round_index, "epoch": epoch, **metrics})
    return history


def sum_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """All-reduce (sum) gradients; a rank with no pairs in a batch contributes zeros."""
    if not is_distributed():
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
