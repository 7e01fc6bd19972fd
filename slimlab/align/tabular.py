"""A softmax policy over M fixed responses of one prompt: the setting where the preference-optimum is exact.

Used by the tests and by the benchmark's exact level: with exact Bradley-Terry preferences the iREPO loss is
zero exactly at pi = ref * exp(r / beta) / Z, so the distance to that policy measures the method itself,
free of sampling and function-approximation error.
"""

from __future__ import annotations

import torch

from slimlab.align.losses import preference_loss


def fit_softmax_policy(method: str, ref_logits: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                       target: torch.Tensor, beta: float, iterations: int = 300) -> torch.Tensor:
    """Log-probs [M] of the softmax policy minimising ``method``'s loss on pairs (first[i], second[i]).

    ``target`` [P] is logit P(first beats second); each pair is oriented so the preferred response is
    "chosen". L-BFGS from the reference logits: the problem is tiny and smooth.
    """
    theta = ref_logits.clone().double().requires_grad_(True)  # [M], starts at the reference
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=iterations, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")
    ref_logps = torch.log_softmax(ref_logits.double(), 0)
    chosen = torch.where(target >= 0, first, second)
    rejected = torch.where(target >= 0, second, first)

    def closure():
        logps = torch.log_softmax(theta, 0)
        loss, _ = preference_loss(method, torch.cat([logps[chosen], logps[rejected]]),
                                  torch.cat([ref_logps[chosen], ref_logps[rejected]]), target.abs(), beta)
        optimizer.zero_grad()
        loss.backward()
        return loss

    optimizer.step(closure)
    return torch.log_softmax(theta.detach(), 0)
