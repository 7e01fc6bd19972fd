"""Real int8 image encoder on PyTorch's own compiler: static W8A8 via PT2E quantization (torchao's
``X86InductorQuantizer``), compiled by inductor with weight freezing, so the int8 convolutions and linears run as
oneDNN kernels (VNNI / AMX on x86) fused with their neighbours. Depthwise convolutions stay float (see
``_quantizer_api``).

The float baseline is the same encoder compiled the same way (``int8=False``): the speed-up compares one runtime
with itself, not int8 against eager PyTorch. Activations get static per-tensor scales observed on calibration
images; weights are per output channel. The mask decoder stays float, compiled the same way in both.

A quantized encoder is saved as a ``torch.export`` archive (``.pt2``: graph + int8 constants, no pickled Python;
a header with the format version and a sha256 of the rest) and compiled again when loaded; compiling needs a C++
compiler (inductor writes C++ kernels).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
import zipfile
from pathlib import Path

import torch
import torch._inductor.config as inductor_config

from slimlab.core.errors import SlimlabError
from slimlab.sam.model import Sam

FORMAT_VERSION = 1
HEADER = "slimlab.json"  # extra file in the archive: format, version, input size, sha256 of the other entries


def archive_digest(source: str | Path | io.BytesIO) -> str:
    """sha256 over a torch.export archive's entries (names below the top folder and bytes, in name order) except
    slimlab's header and torch's random serialization id.
    ``torch.export.load`` does not check the tensor data it reads; reading each entry here also runs zipfile's
    CRC check."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(source) as archive:
        for name in sorted(archive.namelist()):
            if name.rsplit("/", 1)[-1] in (HEADER, "serialization_id"):  # the id is drawn anew on every save
                continue
            digest.update(name.split("/", 1)[-1].encode())  # the top folder is named after the file: left out
            digest.update(archive.read(name))
    return digest.hexdigest()


def _torchao_pt2e():
    """torchao's PT2E modules; importing them also registers the quantize / dequantize operators an int8 archive's
    graph calls, so loading one needs it too. The import logs a warning per optional GPU kernel on a CPU-only
    machine and one about an enum it registers with torch's pytree; neither concerns this path, so both are muted."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    pytree_logger = logging.getLogger("torch.utils._pytree")
    level = pytree_logger.level
    pytree_logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e import quantize_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as error:
        raise SlimlabError(f"the inductor int8 path needs torchao (pip install torchao): {error}") from error
    finally:
        pytree_logger.setLevel(level)
    return quantize_pt2e, x86_inductor_quantizer


def depthwise_convolutions(encoder: torch.nn.Module) -> list[str]:
    """Names of ``encoder``'s grouped (depthwise) convolutions, which the int8 encoder keeps float."""
    return [name for name, module in encoder.named_modules()
            if isinstance(module, torch.nn.Conv2d) and module.groups > 1]


def _quantizer_api(encoder: torch.nn.Module):
    """prepare / convert and the x86 quantizer: per-channel int8 weights, static per-tensor activations, for every
    convolution and linear but the depthwise ones. A 3x3 depthwise convolution is a few percent of TinyViT's
    multiply-adds and bound by memory; in int8 its quantize / dequantize kernels cost more than its product saves
    (full-size TinySAM encoder, 2 threads: 306 ms with them int8, 288-295 ms with them float; float encoder 467 ms)."""
    quantize_pt2e, x86_inductor_quantizer = _torchao_pt2e()
    quantizer = x86_inductor_quantizer.X86InductorQuantizer()
    quantizer.set_global(x86_inductor_quantizer.get_default_x86_inductor_quantization_config())
    for name in depthwise_convolutions(encoder):
        quantizer.set_module_name_qconfig(name, None)
    return quantize_pt2e.prepare_pt2e, quantize_pt2e.convert_pt2e, quantizer


@torch.no_grad()
def quantize_encoder(encoder: torch.nn.Module, calibration: torch.Tensor) -> torch.export.ExportedProgram:
    """Exported int8 (quantize / dequantize around int8 weights) program of ``encoder`` for one (1, 3, S, S) image.

    calibration: (N, 3, S, S) preprocessed images, run one at a time through the observed graph. ``encoder`` is
    not modified (export traces a copy of its graph; convert folds the weights into new int8 constants)."""
    if calibration.ndim != 4 or calibration.shape[0] < 1:
        raise SlimlabError(f"calibration images: expected a (N, 3, S, S) batch with N >= 1, got {tuple(calibration.shape)}")
    prepare_pt2e, convert_pt2e, quantizer = _quantizer_api(encoder)
    example = calibration[:1]
    prepared = prepare_pt2e(torch.export.export(encoder.eval(), (example,)).module(), quantizer)
    for image in calibration:
        prepared(image[None])
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, (example,))


def compile_frozen(module: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """``torch.compile`` with weight freezing (constants folded, weights pre-packed for oneDNN), compiled now on
    ``example`` (static shape) so a missing compiler fails here with a clear message, not on the first image."""
    compiled = torch.compile(module, dynamic=False)
    try:  # freezing is read when the first call compiles, not at torch.compile(..., options=...)
        with torch.no_grad(), inductor_config.patch(freezing=True), warnings.catch_warnings():
            # inductor's int8 lowering copies its zero points with torch.tensor(tensor): a style warning, per layer
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            compiled(example)
    except Exception as error:  # inductor's errors come from deep inside its C++ build
        raise SlimlabError(f"torch.compile (inductor, CPU) failed: {type(error).__name__}: {str(error)[:300]}; "
                           "it needs a working C++ compiler (set CXX)") from error
    return compiled


class InductorSam:
    """A ``Sam`` whose image encoder is compiled by inductor, int8 or float, and whose float decoder is compiled too
    (unless ``compile_decoder=False``); everything else is the float model's. ``encode`` runs one compiled call per
    image (the graph has a static batch of one). Weights are frozen into the compiled graphs: a later change to
    ``model``'s weights is not seen."""

    def __init__(self, model: Sam, encoder: torch.nn.Module, compile_decoder: bool = True) -> None:
        self.model = model.eval()
        self.image_size, self.pixel_mean, self.pixel_std = model.image_size, model.pixel_mean, model.pixel_std
        example = torch.zeros(1, 3, model.image_size, model.image_size)
        self.encoder = compile_frozen(encoder, example)
        # The decoder stays float but is compiled too (in the float runtime as well): at full size its eager
        # Python-level overhead would otherwise be a large share of one image's time. Prompt counts vary, so it
        # compiles lazily and turns dynamic on the second count (inductor's automatic dynamic shapes).
        self._decode = torch.compile(model.decode) if compile_decoder else model.decode

    @classmethod
    def from_model(cls, model: Sam, calibration: torch.Tensor | None = None, int8: bool = True,
                   compile_decoder: bool = True) -> "InductorSam":
        """int8: quantize the encoder on ``calibration`` ((N, 3, S, S) preprocessed images) first."""
        if not int8:
            return cls(model, model.image_encoder, compile_decoder)
        if calibration is None:
            raise SlimlabError("the int8 encoder needs calibration images (static activation scales)")
        return cls(model, quantize_encoder(model.image_encoder, calibration).module(), compile_decoder)

    @classmethod
    def load(cls, model: Sam, path: str | Path, compile_decoder: bool = True) -> "InductorSam":
        """An int8 encoder saved by ``save`` next to the float ``model`` it was quantized from; refused when its
        header, checksum or input size does not fit."""
        path = Path(path)
        if not path.is_file():
            raise SlimlabError(f"{path}: no such int8 encoder archive")
        _torchao_pt2e()  # the graph calls torchao's quantize / dequantize operators
        try:
            digest = archive_digest(path)
            extra = {HEADER: ""}
            program = torch.export.load(str(path), extra_files=extra)
        except Exception as error:  # zipfile's CRC check, or torch's reader on another format
            raise SlimlabError(f"{path}: not a readable torch.export archive (damaged, or another format: "
                               f"{type(error).__name__}: {error})") from error
        info = json.loads(extra[HEADER] or "{}")
        if info.get("format") != "slimlab.sam.inductor_int8" or info.get("version") != FORMAT_VERSION:
            raise SlimlabError(f"{path}: not a slimlab int8 encoder of format version {FORMAT_VERSION} ({info or 'no header'})")
        if info.get("sha256") != digest:
            raise SlimlabError(f"{path}: checksum mismatch (sha256 of the graph and weights {digest[:12]}..., header "
                               f"says {str(info.get('sha256'))[:12]}...): the archive was changed after it was written")
        if info.get("image_size") != model.image_size:
            raise SlimlabError(f"{path}: quantized for {info.get('image_size')} px input, the model takes {model.image_size}")
        return cls(model, program.module(), compile_decoder)

    @staticmethod
    def save(program: torch.export.ExportedProgram, model: Sam, path: str | Path) -> None:
        """Write ``program`` (from ``quantize_encoder``) with a small header holding the format version and the
        sha256 of everything else in the archive; the caller writes atomically."""
        header = {"format": "slimlab.sam.inductor_int8", "version": FORMAT_VERSION, "image_size": model.image_size,
                  "model": dict(getattr(model, "spec", {}) or {})}
        # the digest covers the entries the header sits beside, so the program is serialized once to measure them
        draft = io.BytesIO()
        torch.export.save(program, draft, extra_files={HEADER: json.dumps(header)})
        header["sha256"] = archive_digest(draft)
        torch.export.save(program, str(path), extra_files={HEADER: json.dumps(header)})
        if archive_digest(path) != header["sha256"]:
            raise SlimlabError(f"{path}: the archive written differs from the one measured (non-deterministic save)")

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.preprocess(images)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed -> (B, C, h, w)."""
        with inductor_config.patch(freezing=True):  # a recompile (new dtype, device) must freeze too
            return torch.cat([self.encoder(image[None]) for image in images])

    @torch.no_grad()
    def decode(self, *args, **kwargs):
        """``Sam.decode`` (float weights, frozen into the compiled graph when it compiles)."""
        with inductor_config.patch(freezing=True):
            return self._decode(*args, **kwargs)

    def __getattr__(self, name: str):
        """Everything else (post-processing, mask threshold, prompt encoder) is the float model's, so the
        predictor and the everything-mode generator take this object as they take a ``Sam``."""
        if name == "model":  # not yet set (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)
