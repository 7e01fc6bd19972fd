"""Builders: the official layouts (``vit_b``, ``vit_t``/TinySAM) and the scaled-down CPU models, plus loading.

A model is described by a small ``spec`` dict (name + overrides) that travels with our own checkpoints, so a
distilled or quantized model is rebuilt from a state_dict and never unpickled as a module.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.torch_files import load_torch_file
from slimlab.sam.mask_decoder import MaskDecoder, TwoWayTransformer
from slimlab.sam.model import Sam
from slimlab.sam.prompt_encoder import PromptEncoder
from slimlab.sam.tiny_vit import TinyViT
from slimlab.sam.vit_encoder import ImageEncoderViT

# name -> (encoder kind, encoder kwargs, image size, embedding stride, decoder dim, decoder heads, decoder mlp)
MODEL_SPECS: dict[str, dict] = {
    "vit_b": {"encoder": "vit", "image_size": 1024, "stride": 16, "dim": 256, "heads": 8, "mlp": 2048,
              "encoder_args": {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "window_size": 14,
                               "global_attn_indexes": (2, 5, 8, 11)}},
    "vit_t": {"encoder": "tiny_vit", "image_size": 1024, "stride": 16, "dim": 256, "heads": 8, "mlp": 2048,
              "encoder_args": {}},
    # CPU-scale models for the synthetic shapes set: 128 px input and the official 1/16 embedding stride (8 x 8),
    # so the student keeps TinySAM's stride pattern (2, 2, 1); the decoder is narrowed to 64 channels.
    "shapes_teacher": {"encoder": "vit", "image_size": 128, "stride": 16, "dim": 64, "heads": 4, "mlp": 256,
                       "encoder_args": {"patch_size": 16, "embed_dim": 144, "depth": 6, "num_heads": 4,
                                        "window_size": 4, "global_attn_indexes": (2, 5)}},
    "shapes_student": {"encoder": "tiny_vit", "image_size": 128, "stride": 16, "dim": 64, "heads": 4, "mlp": 256,
                       "encoder_args": {"embed_dims": (12, 24, 48, 64), "depths": (1, 1, 2, 1),
                                        "num_heads": (1, 2, 3, 4), "window_sizes": (8, 8, 8, 8),
                                        "merge_strides": (2, 2, 1), "num_classes": 10}},
}
MODEL_SPECS["tinysam"] = MODEL_SPECS["vit_t"]


def build_model(name: str, device: str | torch.device = "cpu", image_size: int | None = None) -> Sam:
    """Randomly initialised model of a known layout; ``device="meta"`` builds shapes only (no memory).

    ``image_size``: another input size for a TinyViT layout (a multiple of its embedding stride). None of its
    parameters depends on the size (the attention biases follow the window sizes), so weights trained at one size
    load at another; SAM's ViT is refused (its position table has one size). The size is kept in ``model.spec``."""
    if name not in MODEL_SPECS:
        raise SlimlabError(f"unknown SAM model '{name}'; known: {', '.join(sorted(MODEL_SPECS))}")
    spec = copy.deepcopy(MODEL_SPECS[name])
    if image_size is not None and image_size != spec["image_size"]:
        if spec["encoder"] != "tiny_vit":
            raise SlimlabError(f"image_size={image_size}: only TinyViT layouts take another input size ('{name}' "
                               "has a position table of one size)")
        if image_size < spec["stride"] or image_size % spec["stride"]:
            raise SlimlabError(f"image_size={image_size}: must be a positive multiple of the embedding stride "
                               f"{spec['stride']}")
        spec["image_size"] = image_size
    size, dim = spec["image_size"], spec["dim"]
    grid = size // spec["stride"]
    with torch.device(device):
        if spec["encoder"] == "vit":
            encoder = ImageEncoderViT(img_size=size, out_chans=dim, **spec["encoder_args"])
        else:
            encoder = TinyViT(img_size=size, out_chans=dim, **spec["encoder_args"])
        prompt_encoder = PromptEncoder(dim, (grid, grid), (size, size), mask_in_chans=16)
        transformer = TwoWayTransformer(2, dim, spec["heads"], spec["mlp"], 2)
        decoder = MaskDecoder(dim, transformer, 3, 3, dim)
        model = Sam(encoder, prompt_encoder, decoder)
    model.spec = {"name": name} if size == MODEL_SPECS[name]["image_size"] else {"name": name, "image_size": size}
    return model.eval()


def build_sam_vit_b(checkpoint: str | Path | None = None) -> Sam:
    model = build_model("vit_b")
    return load_checkpoint(model, checkpoint) if checkpoint else model


def build_tinysam(checkpoint: str | Path | None = None) -> Sam:
    model = build_model("vit_t")
    return load_checkpoint(model, checkpoint) if checkpoint else model


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], object]:
    """Tensors of a ``.pth`` file (official raw state_dict, or ours with a ``spec``), never unpickling modules.
    The spec is returned as stored ({} when absent); ``load_model`` checks it only when it needs the name."""
    path = Path(path)
    if not path.is_file():
        raise SlimlabError(f"{path}: is a folder, not a checkpoint file" if path.is_dir() else
                           f"{path}: checkpoint not found")
    payload = load_torch_file(path, "weights-only torch checkpoint")
    spec: dict = {}
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        spec = payload.get("spec", {}) or {}
        payload = payload["model"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise SlimlabError(f"{path}: expected a state_dict (name -> tensor)")
    return payload, spec


def load_checkpoint(model: Sam, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> Sam:
    """Strictly load a checkpoint; list missing / unexpected / wrong-shape keys in the error. ``state``: the file's
    tensors when the caller has already read them (the file is then not read again)."""
    if state is None:
        state, _ = read_state_dict(path)
    own = model.state_dict()
    # BatchNorm counters are optional in official files (PyTorch tolerates their absence).
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in state if k in own and state[k].shape != own[k].shape)
    # integer weights would be cast silently by load_state_dict and give empty masks
    wrong_dtype = sorted(f"{k}: file {state[k].dtype} vs model {own[k].dtype}" for k in state
                         if k in own and own[k].is_floating_point() and not state[k].is_floating_point())
    if missing or unexpected or wrong or wrong_dtype:
        lines = [f"{path}: does not match the '{model.spec.get('name', '?')}' layout"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong),
                            ("dtype mismatches", wrong_dtype)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
        raise SlimlabError("\n".join(lines))
    model.load_state_dict(state, strict=False)
    check_finite_weights(model, str(path))
    return model


def check_finite_weights(model: torch.nn.Module, what: str) -> None:
    """Refuse weights holding NaN or inf (a diverged run, a damaged file): they give NaN scores and empty masks."""
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise SlimlabError(f"{what}: {len(broken)} tensor(s) hold NaN or inf values: {', '.join(broken[:5])}"
                           + (" ..." if len(broken) > 5 else ""))


def save_model(model: Sam, path: str | Path) -> None:
    """Save ``{"spec", "model"}`` atomically (tensors only, loadable with ``weights_only=True``)."""
    import io

    from slimlab.core.io import atomic_write_bytes
    buffer = io.BytesIO()
    torch.save({"spec": dict(model.spec), "model": model.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path: str | Path, name: str | None = None) -> Sam:
    """Build the layout named in the file (or ``name``; official files carry none) and load the weights."""
    state, spec = read_state_dict(path)
    source = "the name passed in" if name else "its spec"
    if name is None:
        if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
            raise SlimlabError(f"{path}: 'spec' should be a dict like {{'name': 'vit_t'}} but is {spec!r:.80}; "
                               "pass the layout name (--model) to load the weights anyway")
        name = spec.get("name") or None
    guessed = name is None
    if guessed:  # an official file: tell the layouts apart by a key only one of them has
        name = "vit_b" if "image_encoder.pos_embed" in state else "vit_t"
    if name not in MODEL_SPECS:
        raise SlimlabError(f"{path}: layout '{name}' (from {source}) is not a known SAM model; known: "
                           f"{', '.join(sorted(MODEL_SPECS))}")
    size = spec.get("image_size") if isinstance(spec, dict) and not guessed else None
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise SlimlabError(f"{path}: spec 'image_size' should be an integer but is {size!r:.40}")
    try:
        return load_checkpoint(build_model(name, image_size=size), path, state)
    except SlimlabError as error:
        if not guessed or "does not match" not in str(error):
            raise
        raise SlimlabError(f"{error}\n  the file names no layout, so '{name}' was guessed; pass the layout name "
                           f"(--model; known: {', '.join(sorted(MODEL_SPECS))})") from error
