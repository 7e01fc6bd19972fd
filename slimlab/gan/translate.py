"""Inference: translate a folder of images with a generator file, and export a generator to ONNX.

Generators are fully convolutional, so any image size works: each image is reflect-padded up to the
architecture's size multiple (4 for ResNet, 2**num_downs for U-Net) and the output cropped back.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.images import encode_png, list_images, load_image_tensor
from slimlab.core.io import atomic_directory, atomic_write_bytes, refuse_output_over_inputs
from slimlab.gan.checkpoint import load_generator
from slimlab.gan.networks import GeneratorSpec


@torch.no_grad()
def translate_image(generator: nn.Module, image: torch.Tensor, multiple: int) -> torch.Tensor:
    """(3, H, W) in [-1, 1] -> (3, H, W) in [-1, 1]."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    x = image.unsqueeze(0)  # (1, 3, H, W)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    device = next(generator.parameters()).device
    return generator(x.to(device))[0, :, :height, :width].cpu()


def translate_folder(checkpoint: str | Path, input_dir: str | Path, output_dir: str | Path,
                     device: torch.device, overwrite: bool = False, spec: GeneratorSpec | None = None) -> list[Path]:
    """Translate every image of ``input_dir`` into same-named PNGs in ``output_dir`` (all or nothing)."""
    generator, spec = load_generator(checkpoint, spec)
    generator.to(device).eval()
    files = list_images(input_dir)
    images = [load_image_tensor(file) for file in files]  # read all first: a bad file stops before any output
    for file, image in zip(files, images):
        if min(image.shape[-2:]) < spec.min_size:  # reflection padding and the convolutions need this much
            raise SlimlabError(f"{file}: {image.shape[-1]}x{image.shape[-2]} pixels; this {spec.kind} generator needs "
                               f"at least {spec.min_size} pixels on each side")
    written = []
    with atomic_directory(output_dir, overwrite=overwrite, inputs=(input_dir, checkpoint)) as temporary:
        for file, image in zip(files, images):
            target = temporary / f"{file.stem}.png"
            if target.exists():
                raise SlimlabError(f"{file}: another input has the same name stem; outputs would collide")
            atomic_write_bytes(target, encode_png(translate_image(generator, image, spec.size_multiple)))
            written.append(Path(output_dir) / target.name)
    return written


def export_onnx(checkpoint: str | Path, output: str | Path, size: int = 256, opset: int = 17,
                spec: GeneratorSpec | None = None) -> float:
    """Write the generator as ONNX (dynamic batch, height, width); returns the max |torch - onnxruntime| on a
    random input, checked before the file is put in place."""
    import onnxruntime

    output = Path(output)
    refuse_output_over_inputs(output, (checkpoint,))
    opsets = supported_opsets()
    if opset not in opsets:  # outside them the exporter fails deep in tracing, with a page of traceback
        raise SlimlabError(f"--opset {opset}: this torch's ONNX exporter supports opsets {opsets[0]} to {opsets[-1]}")
    generator, spec = load_generator(checkpoint, spec)
    generator.eval()
    if size < spec.min_size:  # 0 or negative would reach torch as a raw RuntimeError
        raise SlimlabError(f"--size {size} must be at least {spec.min_size} for this {spec.kind} generator")
    if size % spec.size_multiple:
        raise SlimlabError(f"--size {size} must be a multiple of {spec.size_multiple} for this {spec.kind} generator")
    example = torch.rand(1, spec.input_channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    try:
        scratch = tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None)
    except OSError as error:  # a read-only folder: name the output, not the temporary folder tried in it
        raise SlimlabError(f"{output}: cannot write here ({error.strerror or error}); nothing was written") from error
    with scratch as folder:
        temporary = Path(folder) / "model.onnx"
        with warnings.catch_warnings():  # constant-folding and instance-norm tracer notes; the check below
            warnings.simplefilter("ignore", UserWarning)  # and the tests (another input size) cover both
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(generator, (example,), str(temporary), input_names=["image"],
                              output_names=["translated"], opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            "translated": {0: "batch", 2: "height", 3: "width"}})
        session = onnxruntime.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
        (onnx_out,) = session.run(None, {"image": example.numpy()})
        with torch.no_grad():
            torch_out = generator(example).numpy()
        difference = float(np.abs(onnx_out - torch_out).max())
        if difference > 1e-3:
            raise SlimlabError(f"{checkpoint}: ONNX export disagrees with torch by {difference:.2e}; not written")
        atomic_write_bytes(output, temporary.read_bytes())
    return difference


def supported_opsets() -> range:
    """The ONNX opsets the installed torch's exporter accepts (torch 2.x: 7 to 23 or so)."""
    try:  # private, but the only place torch states its range
        from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_MIN_OPSET
    except ImportError:  # a torch that moved them: let its exporter judge
        return range(1, 1000)
    return range(ONNX_MIN_OPSET, ONNX_MAX_OPSET + 1)
