"""Generator / discriminator files: ``{"kind": ..., "spec": {...}, "state_dict": {...}}`` written by torch.save.

A plain state dict from pytorch-CycleGAN-and-pix2pix (``latest_net_G.pth``) loads too, when the caller says
which architecture it is; a plain PatchGAN state dict (``latest_net_D.pth``, instance norm) needs nothing: its
input channels, width and depth are read from the weight shapes. Loading checks every key and shape first and
names the ones that do not fit.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes
from slimlab.core.torch_files import load_torch_file
from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, build_generator


def save_generator(path: str | Path, generator: nn.Module, spec: GeneratorSpec, **extra) -> None:
    _save(path, {"kind": "generator", "spec": spec.to_dict(), "state_dict": _cpu(generator.state_dict()), **extra})


def save_discriminator(path: str | Path, discriminator: PatchDiscriminator) -> None:
    _save(path, {"kind": "discriminator", "spec": discriminator.spec(), "state_dict": _cpu(discriminator.state_dict())})


def load_generator(path: str | Path, spec: GeneratorSpec | None = None) -> tuple[nn.Module, GeneratorSpec]:
    """Rebuild a generator from a slimlab file (``spec`` taken from the file) or a plain state dict (``spec`` given)."""
    payload = read_checkpoint(path)
    if "state_dict" in payload and "spec" in payload:
        if payload.get("kind") != "generator":
            raise SlimlabError(f"{path}: holds a {payload.get('kind')}, not a generator")
        if not isinstance(payload["spec"], dict):
            raise SlimlabError(f"{path}: the generator spec is a {type(payload['spec']).__name__}, not a dict")
        with errors_naming(path):
            stored = GeneratorSpec.from_dict(payload["spec"])
        spec = spec or stored
        state = payload["state_dict"]
    else:
        if spec is None:
            raise SlimlabError(f"{path}: a plain state dict; give its architecture (e.g. --kind resnet --ngf 64 "
                               "--n-blocks 9; distill: --teacher-kind resnet --teacher-ngf 64 --teacher-n-blocks 9)")
        state = payload
    with errors_naming(path):
        generator = build_generator(spec)
    load_checked(generator, state, path)
    generator.eval()
    return generator, spec


@contextlib.contextmanager
def errors_naming(path: str | Path):
    """Prefix a SlimlabError raised inside with ``path``: the spec's own checks do not know which file it is from."""
    try:
        yield
    except SlimlabError as error:
        raise SlimlabError(f"{path}: {error}") from error


def load_discriminator(path: str | Path) -> PatchDiscriminator:
    """A slimlab discriminator file, or a plain PatchGAN state dict (pytorch-CycleGAN-and-pix2pix key names)."""
    payload = read_checkpoint(path)
    if "state_dict" in payload or "kind" in payload:
        if payload.get("kind") != "discriminator" or "spec" not in payload:
            raise SlimlabError(f"{path}: not a slimlab discriminator file (expected kind 'discriminator' with a spec)")
        spec, state = payload["spec"], payload["state_dict"]
    else:
        spec, state = plain_discriminator_spec(payload, path), payload
    try:
        discriminator = PatchDiscriminator(**spec)
    except TypeError as error:  # unknown or missing spec fields
        raise SlimlabError(f"{path}: discriminator spec {spec!r:.120} does not fit PatchDiscriminator ({error})") from error
    load_checked(discriminator, state, path)
    return discriminator


def plain_discriminator_spec(state: dict, path: str | Path) -> dict:
    """input_channels, ndf and n_layers of a plain NLayerDiscriminator state dict: the first conv is
    (ndf, input_channels, 4, 4) and there are n_layers + 2 convolutions with weights."""
    state = {str(key).removeprefix("module."): value for key, value in state.items()}
    first = state.get("model.0.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 4:
        raise SlimlabError(f"{path}: neither a slimlab discriminator file nor a plain PatchGAN state dict "
                           "(no 4-d 'model.0.weight'); keys: " + ", ".join(list(state)[:6]))
    convolutions = [key for key, value in state.items()
                    if key.startswith("model.") and key.endswith(".weight") and value.dim() == 4]
    if len(convolutions) < 3:
        raise SlimlabError(f"{path}: a plain PatchGAN state dict needs at least 3 convolution weights, found "
                           f"{len(convolutions)}")
    if any(key.endswith("running_mean") for key in state):
        raise SlimlabError(f"{path}: a PatchGAN trained with batch norm (running_mean keys); slimlab's PatchGAN uses "
                           "instance norm (pytorch-CycleGAN-and-pix2pix --norm instance)")
    return {"input_channels": int(first.shape[1]), "ndf": int(first.shape[0]), "n_layers": len(convolutions) - 2}


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SlimlabError(f"{path}: checkpoint not found")
    payload = load_torch_file(path, "torch checkpoint")
    if not isinstance(payload, dict):
        raise SlimlabError(f"{path}: expected a dict in the checkpoint, found {type(payload).__name__}")
    return payload


def load_checked(module: nn.Module, state: dict, where: str | Path) -> None:
    """``load_state_dict`` that first lists missing, unexpected and wrongly shaped keys by name."""
    expected = module.state_dict()
    state = {key.removeprefix("module."): value for key, value in state.items()}  # DataParallel prefix
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches (file vs model)", wrong)):
        if keys:
            problems.append(f"{label}: {', '.join(keys[:6])}" + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""))
    if problems:
        raise SlimlabError(f"{where}: weights do not fit the {type(module).__name__} architecture; "
                           + "; ".join(problems))
    module.load_state_dict(state)


def _cpu(state: dict) -> dict:
    return {key: value.detach().cpu().clone() for key, value in state.items()}


def _save(path: str | Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
