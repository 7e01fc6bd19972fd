"""One frozen config for PAR training / evaluation; its fields are also the CLI's ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass

from slimlab.core.errors import SlimlabError

DATASETS = ("synthetic", "pa100k", "rap", "peta", "pkl")


@dataclass(frozen=True)
class ParTrainConfig:
    """Attribute aware pooling (or a baseline head) trained on a PAR dataset with weighted BCE."""
    dataset: str = "synthetic"        # synthetic | pa100k | rap | peta | pkl (a Rethinking_of_PAR dataset .pkl)
    data_root: str = ""               # annotation file or dataset folder for the real datasets
    images_root: str = ""             # folder of the images when it is not next to the annotation file
    partition: int = 0                # which released train/test partition (RAP, PETA, pkl files with several)
    variant: str = "correlated"       # synthetic only: correlated | independent (the control)
    train_count: int = 8000           # synthetic only: training images
    test_count: int = 2000            # synthetic only: test images
    identity_disjoint: bool = True    # synthetic only: test identities unseen in training
    data_seed: int = 0                # synthetic only: the generator's seed (fixed across training seeds)
    head: str = "aap"                 # aap | branches | global | correlation
    width: int = 16                   # trunk width; channels of the feature map are 4 x width
    blocks_per_stage: int = 1
    receptive_field: str = "wide"     # wide (3x3 throughout) | local (pointwise last stage: features see their region)
    branch_dim: int = 64              # d, the size of each branch's feature h_b
    regions: str = "stripes"          # stripes (fixed body stripes) | learned (spatial attention per branch)
    attribute_to_branch: tuple[int, ...] = ()  # branch (0 head, 1 upper, 2 lower, 3 whole) per attribute; () = by name
    mixing: float | str = "learned"   # AAP lambda in [0, 1], or "learned" (per attribute, starts at 0.7)
    combine: str = "log_odds"         # log_odds (own + context evidence, Bayes' rule) | linear (the spec's lambda mix)
    partner_weights: str = "learned"  # uniform | learned weights w_ij over partner attributes
    partner_init: str = "uniform"     # uniform (u_ij = 0) | informative (w_ij starts proportional to |C_ij - C'_ij|)
    context_detach: bool = False      # stop gradients from the context into the other branches
    pooling_learning_rate_scale: float = 10.0  # AAP's lambda and partner weights learn this much faster than the net
    prior: str = "train"              # train (co-occurrence of training labels) | shuffled (control) | oracle (synthetic)
    own_loss_weight: float = 0.5      # weight of the extra loss on the branches' own predictions (AAP only)
    loss_weighting: str = "exp_ratio" # exp_ratio (strong-baseline weighted BCE) | none (plain BCE)
    image_height: int = 64
    image_width: int = 32
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 1e-3       # Adam, cosine-decayed to 0 over all steps
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/par"
    backbone_weights: str = ""        # optional trunk state dict (.pt / .safetensors) to start from
    resume: bool = False              # continue from out_dir/checkpoint.pt when it exists
    stop_after_epochs: int = 0        # stop (checkpointed) after this many epochs, e.g. to fit a job time limit
    evaluate_every: int = 0           # epochs between test evaluations (0 = only at the end)
    threads: int = 0                  # torch CPU threads (0 = leave torch's choice)

    def __post_init__(self):
        checks = {"dataset": (self.dataset, DATASETS), "variant": (self.variant, ("correlated", "independent")),
                  "head": (self.head, ("aap", "branches", "global", "correlation")),
                  "regions": (self.regions, ("stripes", "learned")),
                  "receptive_field": (self.receptive_field, ("wide", "local")),
                  "partner_weights": (self.partner_weights, ("uniform", "learned")),
                  "combine": (self.combine, ("linear", "log_odds")),
                  "partner_init": (self.partner_init, ("uniform", "informative")),
                  "prior": (self.prior, ("train", "shuffled", "oracle")),
                  "loss_weighting": (self.loss_weighting, ("exp_ratio", "none"))}
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise SlimlabError(f"config '{key}' must be one of {', '.join(allowed)}, got '{value}'")
        if isinstance(self.mixing, str) and self.mixing != "learned":
            raise SlimlabError(f"config 'mixing' must be a number in [0, 1] or 'learned', got '{self.mixing}'")
        if not isinstance(self.mixing, str) and not 0.0 <= self.mixing <= 1.0:
            raise SlimlabError(f"config 'mixing' must lie in [0, 1], got {self.mixing}")
        if self.dataset != "synthetic" and not self.data_root:
            raise SlimlabError(f"dataset '{self.dataset}' needs data_root=<annotation file or dataset folder>")
        if self.prior == "oracle" and self.dataset != "synthetic":
            raise SlimlabError("prior=oracle needs the synthetic dataset (only its true model is known)")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Numbers torch would otherwise reject deep inside (Adam's ValueError, set_num_threads' RuntimeError) or
        accept silently (a negative count that skips every epoch)."""
        rules = {
            "epochs": (self.epochs >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "learning_rate": (self.learning_rate > 0, "> 0"), "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "pooling_learning_rate_scale": (self.pooling_learning_rate_scale > 0, "> 0"),
            "own_loss_weight": (self.own_loss_weight >= 0, ">= 0"),
            "train_count": (self.train_count >= 1, ">= 1"), "test_count": (self.test_count >= 1, ">= 1"),
            "partition": (self.partition >= 0, ">= 0"),
            "width": (self.width >= 1, ">= 1"), "blocks_per_stage": (self.blocks_per_stage >= 1, ">= 1"),
            "branch_dim": (self.branch_dim >= 1, ">= 1"),
            "image_height": (self.image_height >= 8, ">= 8 (the trunk downsamples by 8)"),
            "image_width": (self.image_width >= 8, ">= 8 (the trunk downsamples by 8)"),
            "stop_after_epochs": (self.stop_after_epochs >= 0, ">= 0 (0 = run all epochs)"),
            "evaluate_every": (self.evaluate_every >= 0, ">= 0 (0 = only at the end)"),
            "threads": (self.threads >= 0, ">= 0 (0 = leave torch's choice)"),
        }
        for key, (valid, rule) in rules.items():
            if not valid:
                raise SlimlabError(f"config '{key}' must be {rule}, got {getattr(self, key)!r}")
        outside = [b for b in self.attribute_to_branch if b not in (0, 1, 2, 3)]
        if outside:
            raise SlimlabError(f"config 'attribute_to_branch' entries must be 0 (head), 1 (upper), 2 (lower) or "
                               f"3 (whole body), got {outside[0]}")
