"""Attribute aware pooling: mix each attribute's own prediction with a context estimate from other branches.

For attribute i owned by branch b(i), with own probabilities p (B, A) from the region branches:

    p~_i = sum_j w_ij * (C_ij * p_j + C'_ij * (1 - p_j))      over j with b(j) != b(i)
    p^_i = lambda_i * p_i + (1 - lambda_i) * p~_i                             (combine="linear", the spec's form)
    logit p^_i = logit p_i + (1 - lambda_i) / lambda_i * (logit p~_i - logit r_i)   (combine="log_odds")

C_ij = P(a_i = 1 | a_j = 1) and C'_ij = P(a_i = 1 | a_j = 0) form the co-occurrence prior counted on training
labels (Laplace-smoothed). The context term is the law of total probability over a_j, with the other branch's
prediction p_j standing in for P(a_j = 1); the weights w_ij (uniform, or a learned softmax) pick which partners
to trust. Everything is differentiable, so gradients reach the other branches through p_j unless detached.

Why a log-odds option: a linear mix cannot follow the evidence. Where a branch sees its attribute, p_i is near 0 or
1 and should win; where the attribute is hidden, p_i falls back to the base rate and the context should decide. A
fixed lambda does the same thing in both cases, and with lambda >= 0.5 the context can never move a confident own
prediction nor, from a hidden one, get far. Adding log-odds is Bayes' rule for two posteriors of the same label
from evidence that is independent given the label (own region, other regions): the context contributes its
evidence, logit p~_i - logit r_i with r_i the training base rate, and the image's evidence adds to it. At lambda =
0.5 the weight is 1 (plain Bayes); lambda -> 1 switches the context off, as in the linear form.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from slimlab.core.errors import SlimlabError


def cooccurrence_matrices(labels: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Laplace-smoothed (A, A) matrices C[i, j] = P(a_i=1 | a_j=1) and C'[i, j] = P(a_i=1 | a_j=0) from (N, A) 0/1 labels."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    if y.ndim != 2:
        raise SlimlabError(f"co-occurrence: labels must be (images, attributes), got shape {tuple(y.shape)}")
    both = y.T @ y                              # (A, A): n_ij = #(a_i = 1 and a_j = 1)
    given_negative = y.T @ (1 - y)              # (A, A): #(a_i = 1 and a_j = 0)
    positives = y.sum(0)                        # (A,): n_j
    negatives = y.shape[0] - positives
    given_positive_matrix = (both + 1) / (positives[None, :] + 2)
    given_negative_matrix = (given_negative + 1) / (negatives[None, :] + 2)
    return given_positive_matrix.float(), given_negative_matrix.float()


def base_rates(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(A,) Laplace-smoothed share of positives r_i = (n_i + 1) / (N + 2), the prior the log-odds mix divides out."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    return ((y.sum(0) + 1) / (y.shape[0] + 2)).float()


def shuffle_cooccurrence(given_positive: torch.Tensor, given_negative: torch.Tensor,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The control prior: the same matrices with attribute identities permuted (statistics kept, meaning lost).
    Base rates stay unpermuted: the control removes which partner tells what, not how common each attribute is."""
    count = given_positive.shape[0]
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(count, generator=generator)
    while count > 1 and bool((permutation == torch.arange(count)).any()):  # no attribute keeps its own row
        permutation = torch.randperm(count, generator=generator)
    return given_positive[permutation][:, permutation], given_negative[permutation][:, permutation]


class AttributeAwarePooling(nn.Module):
    """Plug-in AAP head on own probabilities (B, A); returns (pooled p^, context p~), both (B, A).

    ``mixing`` is a fixed lambda in [0, 1] or "learned" (lambda_i = sigmoid(l_i), initialised at 0.7);
    ``partner_weights`` is "uniform" (1 / count) or "learned" (softmax of logits u_ij initialised at 0);
    ``combine`` is "linear" (the spec's mix) or "log_odds", which needs ``rates``, the (A,) training base rates
    (``base_rates(labels)``; left None they start at 0.5, a placeholder for weights loaded from a checkpoint).
    An attribute whose branch owns every attribute has no context and keeps its own prediction.
    """

    def __init__(self, attribute_to_branch: Sequence[int], given_positive: torch.Tensor, given_negative: torch.Tensor,
                 mixing: float | Literal["learned"] = "learned", partner_weights: Literal["uniform", "learned"] = "learned",
                 context_detach: bool = False, initial_lambda: float = 0.7,
                 partner_init: Literal["uniform", "informative"] = "uniform",
                 combine: Literal["linear", "log_odds"] = "linear", rates: torch.Tensor | None = None):
        super().__init__()
        branches = torch.as_tensor(list(attribute_to_branch))
        count = branches.numel()
        for name, matrix in (("C (given positive)", given_positive), ("C' (given negative)", given_negative)):
            if tuple(matrix.shape) != (count, count):
                raise SlimlabError(f"AAP: co-occurrence {name} has shape {tuple(matrix.shape)}, "
                                   f"expected ({count}, {count}) for {count} attributes")
        self.register_buffer("partner_mask", branches[:, None] != branches[None, :])   # (A, A) j in another branch
        self.register_buffer("given_positive", given_positive.float().clone())
        self.register_buffer("given_negative", given_negative.float().clone())
        self.context_detach = context_detach
        if combine not in ("linear", "log_odds"):
            raise SlimlabError(f"AAP: combine must be 'linear' or 'log_odds', got '{combine}'")
        self.combine = combine
        if combine == "log_odds":  # a buffer only in this mode, so linear checkpoints keep their exact keys
            rates = torch.full((count,), 0.5) if rates is None else torch.as_tensor(rates).float()
            if tuple(rates.shape) != (count,):
                raise SlimlabError(f"AAP: base rates have shape {tuple(rates.shape)}, expected ({count},)")
            self.register_buffer("rates", rates.clone())
        # One learnable logit per valid (i, j) pair only: same-branch pairs never take part, so they get no parameter.
        valid_pairs = int(self.partner_mask.sum())
        self.partner_logits = nn.Parameter(torch.zeros(valid_pairs)) if partner_weights == "learned" else None
        if self.partner_logits is not None and partner_init == "informative":
            self.initialise_informative_partners()
        if mixing == "learned":
            self.lambda_logits = nn.Parameter(torch.full((count,), math.log(initial_lambda / (1 - initial_lambda))))
            self.fixed_lambda = None
        else:
            if not 0.0 <= float(mixing) <= 1.0:
                raise SlimlabError(f"AAP: lambda must lie in [0, 1] or be 'learned', got {mixing}")
            self.lambda_logits, self.fixed_lambda = None, float(mixing)

    def initialise_informative_partners(self) -> None:
        """Start w_ij proportional to |C_ij - C'_ij|: how far knowing a_j moves P(a_i), i.e. how much j can tell."""
        shift = (self.given_positive - self.given_negative).abs()[self.partner_mask]
        with torch.no_grad():
            self.partner_logits.copy_(torch.log(shift + 1e-3))

    def partner_weight_matrix(self) -> torch.Tensor:
        """(A, A) row-stochastic weights over partners in other branches (all-zero rows where there are none)."""
        mask = self.partner_mask
        if self.partner_logits is None:
            weights = mask.float()
        else:
            logits = torch.zeros(mask.shape, device=mask.device).masked_scatter(mask, self.partner_logits)  # (A, A) u_ij
            weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values) * mask
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def mixing_lambda(self) -> torch.Tensor:
        if self.lambda_logits is not None:
            return torch.sigmoid(self.lambda_logits)                        # (A,)
        return torch.full((self.partner_mask.shape[0],), self.fixed_lambda, device=self.partner_mask.device)

    def forward(self, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        partners = own.detach() if self.context_detach else own            # (B, A) p_j
        weights = self.partner_weight_matrix()                              # (A, A) w_ij
        # p~[b, i] = sum_j p[b, j] * w_ij C_ij + (1 - p[b, j]) * w_ij C'_ij
        context = partners @ (weights * self.given_positive).T + (1 - partners) @ (weights * self.given_negative).T
        has_partner = self.partner_mask.any(dim=1)                          # (A,)
        context = torch.where(has_partner, context, own)
        mixing = self.mixing_lambda()
        if self.combine == "linear":
            return mixing * own + (1 - mixing) * context, context
        floor = 1e-6  # own and context are probabilities; keep their log-odds finite
        evidence = torch.logit(context.clamp(floor, 1 - floor)) - torch.logit(self.rates.clamp(floor, 1 - floor))
        weight = (1 - mixing) / mixing.clamp_min(floor)                      # (A,): 1 at lambda 0.5, 0 at lambda 1
        evidence = torch.where(has_partner, evidence, torch.zeros_like(evidence))
        return torch.sigmoid(torch.logit(own.clamp(floor, 1 - floor)) + weight * evidence), context
