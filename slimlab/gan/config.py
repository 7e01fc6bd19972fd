"""One frozen config per recipe; every field is also a ``key=value`` override on the command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from slimlab.core.errors import SlimlabError
from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator


@dataclass(frozen=True)
class TeacherConfig:
    """Train an image-translation GAN: pix2pix (paired) or CycleGAN (unpaired). Also the from-scratch baseline."""
    data: str                               # folder (paired: A/+B/ or A|B images; unpaired: trainA/+trainB/) or builtin:<task>
    mode: Literal["paired", "unpaired"] = "paired"
    out_dir: str = "runs/gan/teacher"
    generator: Literal["resnet", "unet"] = "resnet"
    ngf: int = 16                           # generator width (CycleGAN paper: 64)
    n_blocks: int = 6                       # residual blocks (CycleGAN paper: 9 at 256 px)
    num_downs: int = 6                      # unet depth (input sides must divide by 2**num_downs)
    global_skip: bool = False               # G outputs clamp(input + correction): for tasks whose output is a
                                            # refined input (super-resolution); students inherit it from the teacher
    ndf: int = 16                           # PatchGAN width (paper: 64)
    slice_from: str = ""                    # paired only: start G from the leading filters of this wider generator
                                            # file (the "pruned teacher, retrained on ground truth" baseline)
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4                        # Adam, betas (beta1, 0.999); linear decay to 0 over the second half
    beta1: float = 0.5
    lambda_l1: float = 100.0                # pix2pix: weight of L1 to the ground truth
    lambda_cycle: float = 10.0              # CycleGAN: weight of each cycle-consistency L1
    lambda_identity: float = 0.0            # CycleGAN: identity loss, as a fraction of lambda_cycle (paper: 0.5)
    load_size: int = 72                     # augmentation: resize to load_size, random crop_size crop, flip
    crop_size: int = 64
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    checkpoint_every: int = 250             # also written at the last step
    resume: bool = True                     # continue from out_dir/state.pt when it exists

    def __post_init__(self):
        check_training_fields(self)
        for name in ("ngf", "ndf"):
            require(self, name, getattr(self, name) >= 1, "must be >= 1")
        require(self, "n_blocks", self.n_blocks >= 0, "must be >= 0")
        if self.generator == "unet":  # the U-Net's innermost five levels are fixed
            require(self, "num_downs", self.num_downs >= 5, "must be >= 5 for the unet generator")
        spec = GeneratorSpec(kind=self.generator, num_downs=self.num_downs)
        depth = "its two stride-2 downsamplings" if self.generator == "resnet" else "2**num_downs"
        require(self, "crop_size", self.crop_size % spec.size_multiple == 0,
                f"must be a multiple of {spec.size_multiple} for the {self.generator} generator ({depth})")


@dataclass(frozen=True)
class DistillConfig:
    """Portable-GAN distillation: a thin student G learns from a frozen teacher, judged by a student D."""
    # fields added after runs were stored, at the value that reproduces those runs (they resume unchanged)
    ADDED_FIELDS: ClassVar[dict] = {"student_d_init": "scratch"}
    data: str
    teacher: str                            # generator file from train-teacher (paired: G.pt; unpaired: G_AB.pt)
    teacher_d: str = ""                     # teacher discriminator file (features for L_feat); "" = next to teacher
    teacher_reverse: str = ""               # unpaired only: the B->A teacher (G_BA.pt); "" = next to teacher
    teacher_kind: Literal["", "resnet", "unet"] = ""  # "" = the teacher file says; else the architecture of a plain
                                            # state dict (pytorch-CycleGAN-and-pix2pix latest_net_G.pth), with:
    teacher_ngf: int = 64
    teacher_n_blocks: int = 9
    teacher_num_downs: int = 8
    mode: Literal["paired", "unpaired"] = "paired"
    out_dir: str = "runs/gan/student"
    ratio: float = 0.375                    # student width = ratio * teacher width (params ~ ratio^2)
    method: Literal["portable", "gan_compression"] = "portable"  # gan_compression: the peer recipe of Li et al.
                                            # (CVPR 2020): lambda_pix L1 to the ground truth (paired) or the
                                            # teacher's output (unpaired), lambda_distill 1x1-conv MSE on the
                                            # generators' bottleneck activations, a D started from the teacher's
                                            # D and trained on real vs student; no L_feat, no triplet
    init: Literal["scratch", "slice"] = "scratch"
    student_discriminator: bool = True      # False: pixel + feature distillation only (ablation)
    triplet: bool = True                    # triplet term for the student discriminator
    feature_extractor: Literal["teacher_d", "random"] = "teacher_d"
    lambda_pix: float = 10.0
    lambda_feat: float = 1.0
    lambda_gan: float = 1.0
    lambda_tri: float = 0.1
    lambda_distill: float = 1.0             # gan_compression only: weight of the activation distillation
    lambda_gt: float = 0.0                  # paired only: extra L1 of the student to the ground truth
    lambda_cycle: float = 0.0               # unpaired only: student cycle loss (teacher already encodes cycles)
    triplet_margin: float = 1.0
    ndf: int = 0                            # student-D width; 0 = the teacher D's width
    student_d_init: Literal["scratch", "teacher"] = "scratch"  # teacher: D_S starts as a copy of the teacher's D
                                            # (a judge of real vs generated from step 0; needs ndf 0 or its width)
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    load_size: int = 72
    crop_size: int = 64
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    checkpoint_every: int = 250
    resume: bool = True

    def __post_init__(self):
        # crop_size against the generator's size multiple is checked by the recipe: the teacher file holds it
        check_training_fields(self)
        require(self, "ratio", 0 < self.ratio <= 1, "must be in (0, 1] (student width / teacher width)")
        require(self, "ndf", self.ndf >= 0, "must be >= 0 (0 = the teacher D's width)")
        require(self, "triplet_margin", self.triplet_margin >= 0, "must be >= 0")
        if self.teacher_kind:
            require(self, "teacher_ngf", self.teacher_ngf >= 1, "must be >= 1")
            require(self, "teacher_n_blocks", self.teacher_n_blocks >= 0, "must be >= 0")


def check_training_fields(cfg) -> None:
    """Ranges both recipes need; each would otherwise fail deep in training (a modulo by zero, a 1x1 InstanceNorm)."""
    require(cfg, "steps", cfg.steps >= 0, "must be >= 0 (0 writes the networks as initialised, e.g. from slice_from)")
    for name in ("batch_size", "log_every", "checkpoint_every"):
        require(cfg, name, getattr(cfg, name) >= 1, "must be >= 1")
    require(cfg, "lr", cfg.lr > 0, "must be > 0")
    require(cfg, "beta1", 0 <= cfg.beta1 < 1, "must be in [0, 1) (Adam's first-moment decay)")
    for name in (n for n in cfg.__dataclass_fields__ if n.startswith("lambda_")):
        require(cfg, name, getattr(cfg, name) >= 0, "must be >= 0 (a loss weight)")
    smallest = PatchDiscriminator.min_size()
    require(cfg, "crop_size", cfg.crop_size >= smallest,
            f"must be >= {smallest} (the PatchGAN discriminator halves it three times and still needs 2x2 maps)")
    require(cfg, "load_size", cfg.load_size >= cfg.crop_size, f"must be >= crop_size ({cfg.crop_size}), since the crop "
            "is taken from the image resized to load_size")


def require(cfg, name: str, condition: bool, rule: str) -> None:
    if not condition:
        raise SlimlabError(f"{type(cfg).__name__}: '{name}' is {getattr(cfg, name)!r}; it {rule}")
