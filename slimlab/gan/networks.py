"""Generators and discriminators of the image-translation papers (CycleGAN / pix2pix layouts).

Parameter names follow pytorch-CycleGAN-and-pix2pix (``model.N.*``, ``conv_block.N.*``, ``submodule``), so its
state dicts load directly. Norm is InstanceNorm without affine parameters (the CycleGAN default), which is why
the convs before it keep their bias.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from slimlab.core.errors import SlimlabError


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything needed to rebuild a generator: stored in every checkpoint next to its weights."""
    kind: str = "resnet"      # resnet | unet
    input_channels: int = 3
    output_channels: int = 3
    ngf: int = 32             # width of the first layer; every later width is a multiple of it
    n_blocks: int = 6         # resnet: residual blocks at the bottleneck
    num_downs: int = 6        # unet: downsamplings (input sides must be divisible by 2**num_downs)
    dropout: bool = False
    global_skip: bool = False  # output = clamp(input + network output): the network learns a correction of its
                               # input, as super-resolution nets do (needs input_channels == output_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GeneratorSpec":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise SlimlabError(f"generator spec has unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def __post_init__(self):
        if self.global_skip and self.input_channels != self.output_channels:
            raise SlimlabError(f"generator spec: global_skip needs input_channels == output_channels, got "
                               f"{self.input_channels} and {self.output_channels}")

    def scaled(self, ratio: float) -> "GeneratorSpec":
        """The same architecture with every width multiplied by ``ratio`` (a portable student)."""
        return GeneratorSpec(**{**self.to_dict(), "ngf": max(1, round(self.ngf * ratio))})

    @property
    def size_multiple(self) -> int:
        return 4 if self.kind == "resnet" else 2 ** self.num_downs

    @property
    def min_size(self) -> int:
        """Smallest input side: InstanceNorm needs more than one value per channel, so the ResNet's two halvings
        must leave at least 2x2 (and its reflection padding needs that too); the U-Net halves down to 1x1."""
        return 8 if self.kind == "resnet" else 2 ** self.num_downs


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dropout: bool):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-out, tanh. (B,Cin,H,W)->(B,Cout,H,W)."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        ngf = spec.ngf
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(spec.input_channels, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for i in range(2):  # downsample: H -> H/4, channels ngf -> 4 ngf
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU(True)]
        layers += [ResnetBlock(4 * ngf, spec.dropout) for _ in range(spec.n_blocks)]
        for i in range(2):  # upsample back to H
            c = ngf * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, spec.output_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.global_skip = spec.global_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_activations(x, ())[0]

    def forward_with_activations(self, x: torch.Tensor,
                                 layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and the activations after ``model[i]`` for each i in ``layers`` (in model order)."""
        activations, h = [], x
        for index, layer in enumerate(self.model):
            h = layer(h)
            if index in layers:
                activations.append(h)
        return (with_global_skip(x, h) if self.global_skip else h), activations


def bottleneck_layers(spec: GeneratorSpec) -> tuple[int, ...]:
    """Indices into a ResNet generator's ``model`` whose outputs GAN Compression distils: the last ReLU before the
    residual blocks and the output of every third block and of the last one (for 9 blocks: 9, 12, 15, 18, its
    choice). All have 4 * ngf channels at a quarter of the input side."""
    if spec.kind != "resnet":
        raise SlimlabError(f"intermediate-layer distillation needs a resnet generator, got '{spec.kind}'")
    first_block = 10  # pad, conv, norm, relu, then two (conv, norm, relu) downsamplings
    blocks = sorted({b for b in range(3, spec.n_blocks + 1, 3)} | ({spec.n_blocks} if spec.n_blocks else set()))
    return (first_block - 1, *(first_block + b - 1 for b in blocks))


def with_global_skip(x: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) input plus the network's tanh output, clamped back to the image range [-1, 1]. The identity is
    then the easy solution, so a short training run cannot end below its input (the bicubic image in 4x SR)."""
    return (x + correction).clamp(-1.0, 1.0)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-conv, the inner levels, up-conv, then concatenation with the level's input."""

    def __init__(self, outer: int, inner: int, input_channels: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        input_channels = input_channels or outer
        down = [nn.Conv2d(input_channels, inner, 4, stride=2, padding=1)]
        if outermost:
            model = down + [submodule, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            model = [nn.LeakyReLU(0.2, True)] + down + [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1),
                                                        nn.InstanceNorm2d(outer)]
        else:
            model = [nn.LeakyReLU(0.2, True)] + down + [nn.InstanceNorm2d(inner), submodule, nn.ReLU(True),
                                                        nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1),
                                                        nn.InstanceNorm2d(outer)]
            model += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net: ``num_downs`` halvings (widths ngf, 2ngf, 4ngf, then 8ngf), skips at every level."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        if spec.num_downs < 5:
            raise SlimlabError(f"unet generator needs num_downs >= 5, got {spec.num_downs}")
        ngf = spec.ngf
        block = UnetSkipConnectionBlock(8 * ngf, 8 * ngf, innermost=True)
        for _ in range(spec.num_downs - 5):
            block = UnetSkipConnectionBlock(8 * ngf, 8 * ngf, submodule=block, dropout=spec.dropout)
        for outer in (4 * ngf, 2 * ngf, ngf):
            block = UnetSkipConnectionBlock(outer, 2 * outer, submodule=block)
        self.model = UnetSkipConnectionBlock(spec.output_channels, ngf, input_channels=spec.input_channels,
                                             submodule=block, outermost=True)
        self.global_skip = spec.global_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return with_global_skip(x, self.model(x)) if self.global_skip else self.model(x)


def build_generator(spec: GeneratorSpec) -> nn.Module:
    if spec.kind == "resnet":
        return ResnetGenerator(spec)
    if spec.kind == "unet":
        return UnetGenerator(spec)
    raise SlimlabError(f"unknown generator kind '{spec.kind}'; known: resnet, unet")


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (n_layers = 3): (B, C, H, W) -> patch logits (B, 1, H/8 - 2, W/8 - 2).

    ``features(x)`` returns the activation after each LeakyReLU, used for feature distillation and the
    triplet term; the last one is the penultimate map (B, 8 ndf, H/8 - 1, W/8 - 1).
    """

    def __init__(self, input_channels: int = 3, ndf: int = 32, n_layers: int = 3):
        super().__init__()
        self.input_channels, self.ndf, self.n_layers = input_channels, ndf, n_layers
        layers = [nn.Conv2d(input_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            previous, width = width, ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(previous, width, 4, stride=stride, padding=1), nn.InstanceNorm2d(width),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(width, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.logits_and_features(x)[1]

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch logits and every LeakyReLU activation from one pass."""
        outputs = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                outputs.append(x)
        return x, outputs

    def spec(self) -> dict:
        return {"input_channels": self.input_channels, "ndf": self.ndf, "n_layers": self.n_layers}

    @staticmethod
    def min_size(n_layers: int = 3) -> int:
        """Smallest input side: ``n_layers`` halvings then a stride-1 conv (side - 1) whose InstanceNorm needs at
        least 2x2, so the halved side must be >= 3 (16 px gives 2 -> 1x1 and fails)."""
        return 3 * 2**n_layers


def slice_init(student: nn.Module, teacher: nn.Module) -> None:
    """Copy the teacher's leading filters into a thinner student of the same architecture (``--init slice``)."""
    teacher_state = teacher.state_dict()
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            source = teacher_state[name]
            index = tuple(slice(0, n) for n in tensor.shape)
            tensor.copy_(source[index])


def make_student(teacher: nn.Module, teacher_spec: GeneratorSpec, ratio: float,
                 init: str = "scratch") -> tuple[nn.Module, GeneratorSpec]:
    """A portable student: the teacher's architecture at ``ratio`` width, fresh or sliced from the teacher."""
    spec = teacher_spec.scaled(ratio)
    student = build_generator(spec)
    if init == "slice":
        slice_init(student, teacher)
    elif init != "scratch":
        raise SlimlabError(f"unknown student init '{init}'; known: scratch, slice")
    return student, spec
