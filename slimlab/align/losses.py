"""The iREPO loss and the baselines it is compared with, all on sequence log-probs of pairs.

Layout: ``policy_logps`` and ``ref_logps`` are ``[2B]`` with the B chosen rows first and the B rejected
rows after (the same order as the model batch); ``target`` is ``[B]``, the logit of the empirical
probability that chosen beats rejected. Every loss sees the same pairs and targets; only the function of the
implicit-reward difference ``dh = beta * (log-ratio(chosen) - log-ratio(rejected))`` differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimlab.core.errors import SlimlabError

METHODS = ("irepo", "dpo", "ipo", "soft_dpo")


def implicit_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """beta * log(pi / pi_ref) for the chosen [B] and rejected [B] halves."""
    if policy_logps.shape != ref_logps.shape or policy_logps.dim() != 1 or policy_logps.numel() % 2:
        raise SlimlabError(f"policy log-probs {tuple(policy_logps.shape)} and reference log-probs "
                           f"{tuple(ref_logps.shape)} must both be [2B] (chosen rows, then rejected rows)")
    rewards = beta * (policy_logps - ref_logps)  # [2B]
    half = rewards.numel() // 2
    return rewards[:half], rewards[half:]


def pair_losses(method: str, margin: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair loss [B] of ``method`` for implicit-reward margins ``margin`` [B] and logit targets [B]."""
    if method == "irepo":
        # Regression of the margin onto logit(p_hat): zero exactly when the margin equals the target, so the
        # margin stays bounded by |target| instead of growing as it does under the logistic losses.
        return (margin - target) ** 2
    if method == "dpo":
        # Hard label: only the sign of the target (the majority vote) is used; ties are dropped upstream.
        return -F.logsigmoid(torch.sign(target) * margin)
    if method == "ipo":
        # IPO (Azar et al.): the log-ratio difference is pulled to 1 / (2 beta) for every pair, whatever p_hat.
        return (margin / beta - torch.sign(target) / (2 * beta)) ** 2
    if method == "soft_dpo":
        # Cross-entropy against p_hat = sigmoid(target): same minimiser margin = target, other weighting.
        probability = torch.sigmoid(target)
        return -(probability * F.logsigmoid(margin) + (1 - probability) * F.logsigmoid(-margin))
    raise SlimlabError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")


def preference_loss(method: str, policy_logps: torch.Tensor, ref_logps: torch.Tensor, target: torch.Tensor,
                    beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean loss over the B pairs and the TRL-named metrics of the batch."""
    chosen, rejected = implicit_rewards(policy_logps, ref_logps, beta)
    if target.shape != chosen.shape:
        raise SlimlabError(f"target has shape {tuple(target.shape)} but there are {chosen.numel()} pairs")
    margin = chosen - rejected  # [B]
    loss = pair_losses(method, margin, target, beta).mean()
    return loss, batch_metrics(policy_logps, chosen, rejected, target)


def irepo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, z: torch.Tensor,
               beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """L = mean_B (beta * (log-ratio(y) - log-ratio(y')) - z)^2 with z = logit(p_hat)."""
    return preference_loss("irepo", policy_logps, ref_logps, z, beta)


def dpo_loss(policy_logps, ref_logps, z, beta):
    return preference_loss("dpo", policy_logps, ref_logps, z, beta)


def ipo_loss(policy_logps, ref_logps, z, beta):
    return preference_loss("ipo", policy_logps, ref_logps, z, beta)


def soft_dpo_loss(policy_logps, ref_logps, z, beta):
    return preference_loss("soft_dpo", policy_logps, ref_logps, z, beta)


@torch.no_grad()
def batch_metrics(policy_logps: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor,
                  target: torch.Tensor) -> dict[str, float]:
    margin = chosen - rejected
    half = policy_logps.numel() // 2
    metrics = {"rewards/chosen": chosen.mean().item(), "rewards/rejected": rejected.mean().item(),
               "rewards/margins": margin.mean().item(),
               "rewards/accuracies": (torch.sign(margin) == torch.sign(target)).float().mean().item(),
               "logps/chosen": policy_logps[:half].mean().item(), "logps/rejected": policy_logps[half:].mean().item(),
               "irepo/target_mean": target.mean().item(), "irepo/abs_residual": (margin - target).abs().mean().item()}
    metrics["irepo/calibration_corr"] = correlation(margin, target)
    return metrics


def correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    """Pearson correlation; NaN when either side is constant (e.g. one pair)."""
    first, second = first.double() - first.double().mean(), second.double() - second.double().mean()
    denominator = first.norm() * second.norm()
    return (first @ second / denominator).item() if denominator > 0 else float("nan")
