"""PAR models on one trunk: a global head (the weighted-BCE baseline), region branches, and branches + AAP.

Heads (``create_model(head=...)``):
  * ``global``      : GAP + FC over the whole feature map (DeepMAR / strong-baseline layout);
  * ``branches``    : one branch per body region, attribute i read from its own branch only (no context);
  * ``aap``         : ``branches`` + attribute aware pooling with a co-occurrence prior (the method);
  * ``correlation`` : ``branches`` + a learned linear label-correlation layer on the logits (non-prior alternative).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.par.backbone import ResNetTrunk
from slimlab.par.pooling import AttributeAwarePooling

HEADS = ("global", "branches", "aap", "correlation")
# Fixed horizontal stripes as fractions of the feature-map height: head, upper body, lower body, whole body.
REGION_STRIPES = ((0.0, 0.25), (0.25, 0.5), (0.5, 1.0), (0.0, 1.0))
REGION_NAMES = ("head", "upper", "lower", "whole")


class RegionBranches(nn.Module):
    """R branches: conv3x3 on the trunk map, pool over the branch's stripe (or a learned attention map), FC -> h_b."""

    def __init__(self, channels: int, attribute_to_branch: Sequence[int], branch_dim: int,
                 regions: Literal["stripes", "learned"] = "stripes", kernel_size: int = 3):
        super().__init__()
        self.regions = regions
        self.branch_count = len(REGION_STRIPES)
        branches = list(attribute_to_branch)
        if any(not 0 <= b < self.branch_count for b in branches):
            raise SlimlabError(f"attribute_to_branch must hold branch numbers 0..{self.branch_count - 1} "
                               f"({', '.join(REGION_NAMES)}), got {sorted(set(branches))}")
        self.convs = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, kernel_size, 1,
                                                           kernel_size // 2, bias=False),
                                                 nn.BatchNorm2d(channels), nn.ReLU()) for _ in range(self.branch_count))
        self.attention = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _ in range(self.branch_count)) \
            if regions == "learned" else None
        self.projections = nn.ModuleList(nn.Sequential(nn.Linear(channels, branch_dim), nn.ReLU())
                                         for _ in range(self.branch_count))
        # Attribute i's logit is w_i . h_b(i) + c_i: one linear classifier per branch over the attributes it owns.
        self.members = [[i for i, b in enumerate(branches) if b == branch] for branch in range(self.branch_count)]
        self.classifiers = nn.ModuleList(nn.Linear(branch_dim, len(m)) if m else nn.Identity() for m in self.members)
        self.attribute_count = len(branches)

    def pool(self, branch: int, features: torch.Tensor) -> torch.Tensor:
        height = features.shape[2]
        if self.attention is not None:
            weights = torch.softmax(self.attention[branch](features).flatten(2), dim=2)  # (B, 1, h*w)
            return (features.flatten(2) * weights).sum(2)                              # (B, C)
        start, end = REGION_STRIPES[branch]
        top = min(int(round(start * height)), height - 1)
        bottom = max(int(round(end * height)), top + 1)
        return features[:, :, top:bottom].mean(dim=(2, 3))                              # (B, C)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = features.new_zeros(features.shape[0], self.attribute_count)           # (B, A)
        for branch, members in enumerate(self.members):
            if not members:
                continue
            hidden = self.projections[branch](self.pool(branch, self.convs[branch](features)))  # (B, d)
            logits[:, members] = self.classifiers[branch](hidden)
        return logits


class PedestrianAttributeModel(nn.Module):
    """Trunk + head; ``forward`` returns own logits, own probabilities and the final probabilities (B, A)."""

    def __init__(self, head: str, attribute_to_branch: Sequence[int], width: int = 16, blocks_per_stage: int = 1,
                 branch_dim: int = 64, regions: Literal["stripes", "learned"] = "stripes",
                 given_positive: torch.Tensor | None = None, given_negative: torch.Tensor | None = None,
                 mixing: float | str = "learned", partner_weights: str = "learned", context_detach: bool = False,
                 partner_init: str = "uniform", receptive_field: str = "wide", combine: str = "linear",
                 rates: torch.Tensor | None = None):
        super().__init__()
        if head not in HEADS:
            raise SlimlabError(f"unknown head '{head}'; choose one of {', '.join(HEADS)}")
        count = len(attribute_to_branch)
        self.head_name = head
        self.trunk = ResNetTrunk(width, blocks_per_stage, receptive_field)
        channels = self.trunk.out_channels
        self.global_classifier = nn.Linear(channels, count) if head == "global" else None
        # A local trunk keeps a pointwise branch conv too, or the branch would widen the field again (+16 pixels).
        kernel = 1 if receptive_field == "local" else 3
        self.branches = RegionBranches(channels, attribute_to_branch, branch_dim, regions, kernel) \
            if head != "global" else None
        self.correlation = None
        if head == "correlation":
            self.correlation = nn.Linear(count, count)
            nn.init.zeros_(self.correlation.weight)   # starts as the plain branches model
            nn.init.zeros_(self.correlation.bias)
        self.pooling = None
        if head == "aap":
            if given_positive is None or given_negative is None:
                given_positive = torch.full((count, count), 0.5)  # uninformative until set from training labels
                given_negative = torch.full((count, count), 0.5)
            self.pooling = AttributeAwarePooling(attribute_to_branch, given_positive, given_negative,
                                                 mixing, partner_weights, context_detach, partner_init=partner_init,
                                                 combine=combine, rates=rates)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(images)                                                  # (B, C, h, w)
        if self.global_classifier is not None:
            logits = self.global_classifier(features.mean(dim=(2, 3)))                 # (B, A)
        else:
            logits = self.branches(features)
        if self.correlation is not None:
            logits = logits + self.correlation(logits)
        own = torch.sigmoid(logits.float())  # the head runs in fp32, as the spec asks
        output = {"logits": logits, "own": own, "probabilities": own}
        if self.pooling is not None:
            output["probabilities"], output["context"] = self.pooling(own)
        return output


def create_model(head: str, attribute_to_branch: Sequence[int], **options) -> PedestrianAttributeModel:
    """Build a PAR model by head name; ``options`` go to ``PedestrianAttributeModel`` (width, mixing, ...)."""
    return PedestrianAttributeModel(head, attribute_to_branch, **options)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
