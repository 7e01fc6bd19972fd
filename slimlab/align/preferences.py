"""From annotations to training pairs: empirical preference, its logit target, Zermelo ranking, pair choice."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slimlab.core.errors import SlimlabError


def vote_probability(wins: torch.Tensor, n_votes: int | torch.Tensor, prior: float = 0.5) -> torch.Tensor:
    """p_hat = (k + a) / (N + 2a): the smoothed share of N votes that prefer the first response.

    The prior a keeps a unanimous vote short of certainty (a = 0.5 is the Jeffreys / Krichevsky-Trofimov
    estimate), so its logit is finite even before clipping.
    """
    wins = torch.as_tensor(wins, dtype=torch.float64)
    n_votes = torch.as_tensor(n_votes, dtype=torch.float64)
    if torch.any(wins < 0) or torch.any(wins > n_votes):
        raise SlimlabError(f"vote counts must lie in [0, n_votes]; got wins {wins.tolist()} of {n_votes.tolist()}")
    return (wins + prior) / (n_votes + 2 * prior)


def preference_logit(probability: torch.Tensor, clip_eps: float = 0.02) -> torch.Tensor:
    """z = logit(clip(p_hat, eps, 1 - eps)); with eps = 0.02, |z| <= log(49) = 3.89."""
    probability = torch.as_tensor(probability, dtype=torch.float64).clamp(clip_eps, 1 - clip_eps)
    return torch.log(probability) - torch.log1p(-probability)


def aggregate_probabilities(probabilities: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Combine several annotators' P(first beats second), annotators on dim 0: average probabilities or logits."""
    probabilities = torch.as_tensor(probabilities, dtype=torch.float64)
    if how == "mean":
        return probabilities.mean(dim=0)
    if how == "logit_mean":
        clipped = probabilities.clamp(1e-6, 1 - 1e-6)
        return torch.sigmoid((torch.log(clipped) - torch.log1p(-clipped)).mean(dim=0))
    raise SlimlabError(f"unknown aggregate '{how}'; choose mean or logit_mean")


def zermelo_rank(probability: torch.Tensor, iterations: int = 100, tolerance: float = 1e-6) -> torch.Tensor:
    """Bradley-Terry strengths s [K] (geometric mean 1) from a soft win matrix P[i, j] = P(i beats j).

    Zermelo's fixed point with soft wins W_i = sum_j P[i, j] and one comparison per pair:
    s_i <- W_i / sum_{j != i} 1 / (s_i + s_j).
    """
    probability = torch.as_tensor(probability, dtype=torch.float64)
    size = probability.shape[0]
    if probability.shape != (size, size):
        raise SlimlabError(f"preference matrix must be square [K, K], got {tuple(probability.shape)}")
    off_diagonal = ~torch.eye(size, dtype=torch.bool)
    wins = (probability * off_diagonal).sum(dim=1).clamp_min(1e-9)  # a response that never wins keeps s > 0
    strengths = torch.ones(size, dtype=torch.float64)
    for _ in range(iterations):
        pair_sum = strengths[:, None] + strengths[None, :]  # [K, K]
        updated = wins / ((1.0 / pair_sum) * off_diagonal).sum(dim=1)
        updated = updated / torch.exp(torch.log(updated).mean())  # geometric mean 1 fixes the free scale
        change = (updated - strengths).abs().max().item()
        strengths = updated
        if change < tolerance:
            break
    return strengths


@dataclass(frozen=True)
class PairChoice:
    chosen: int        # index of the preferred response among the K
    rejected: int
    probability: float  # empirical P(chosen beats rejected), before clipping


def choose_pairs(probability: torch.Tensor, responses: list[str], mode: str = "best_worst") -> list[PairChoice]:
    """Pairs to train on from one prompt's [K, K] matrix; identical responses never form a pair.

    ``best_worst`` keeps the Zermelo best and worst (one pair per prompt); ``all`` keeps every pair, oriented
    so the empirically preferred response is ``chosen``.
    """
    size = len(responses)
    if mode == "best_worst":
        order = torch.argsort(zermelo_rank(probability), descending=True).tolist()
        best = order[0]
        for worst in reversed(order[1:]):  # the worst response whose text differs from the best one
            if responses[worst] != responses[best]:
                return [PairChoice(best, worst, float(probability[best, worst]))]
        return []
    if mode == "all":
        pairs = []
        for i in range(size):
            for j in range(i + 1, size):
                if responses[i] == responses[j]:
                    continue
                p = float(probability[i, j])
                pairs.append(PairChoice(i, j, p) if p >= 0.5 else PairChoice(j, i, 1.0 - p))
        return pairs
    raise SlimlabError(f"unknown pairs_mode '{mode}'; choose best_worst or all")


def check_matrix(matrix: torch.Tensor, size: int, source: str) -> torch.Tensor:
    """An annotator's [K, K] output must have the right shape and finite probabilities in [0, 1]."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    if matrix.shape != (size, size):
        raise SlimlabError(f"{source}: returned a preference matrix of shape {tuple(matrix.shape)}, expected [{size}, {size}]")
    if not torch.isfinite(matrix).all():
        raise SlimlabError(f"{source}: returned NaN or infinite preference values")
    if matrix.min() < 0 or matrix.max() > 1:
        raise SlimlabError(f"{source}: returned probabilities outside [0, 1] (min {matrix.min():.3g}, max {matrix.max():.3g})")
    return matrix


def logit(probability: float) -> float:
    return math.log(probability / (1 - probability))
