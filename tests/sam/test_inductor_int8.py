import json
import zipfile

import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.everything import MaskGenerator
from slimlab.sam.inductor_int8 import FORMAT_VERSION, InductorSam, depthwise_convolutions, quantize_encoder


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model("shapes_student")


@pytest.fixture(scope="module")
def calibration(student):
    generator = torch.Generator().manual_seed(1)
    return student.preprocess(torch.rand(3, 3, 128, 128, generator=generator) * 255)  # (3, 3, 128, 128)


@pytest.fixture(scope="module")
def program(student, calibration):
    return quantize_encoder(student.image_encoder, calibration)


def test_quantized_encoder_has_int8_weights_and_leaves_the_float_model_alone(student, calibration):
    before = {name: tensor.clone() for name, tensor in student.state_dict().items()}
    program = quantize_encoder(student.image_encoder, calibration)
    assert all(torch.equal(before[name], tensor) for name, tensor in student.state_dict().items())
    int8_constants = [t for t in list(program.constants.values()) + list(program.state_dict.values())
                      if isinstance(t, torch.Tensor) and t.dtype == torch.int8]
    # every conv and linear weight the encoder runs is stored as int8 (not the unused ImageNet head), but the
    # depthwise convolutions', which stay float
    layers = [module for name, module in student.image_encoder.named_modules()
              if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and name != "head"]
    depthwise = depthwise_convolutions(student.image_encoder)
    assert depthwise and all(student.image_encoder.get_submodule(name).groups > 1 for name in depthwise)
    assert len(int8_constants) == len(layers) - len(depthwise)
    # in the graph: a convolution's weight is either a dequantized int8 constant or, for a depthwise one, the
    # float parameter itself
    weight_sources = [node.args[1] for node in program.graph.nodes
                      if node.op == "call_function" and node.target == torch.ops.aten.conv2d.default]
    float_weights = [source.name for source in weight_sources if source.op == "placeholder"]
    assert len(float_weights) == len(depthwise)
    assert sorted(float_weights) == sorted("p_" + name.replace(".", "_") + "_weight" for name in depthwise)
    assert all("dequantize_per_channel" in str(source.target) for source in weight_sources if source.op != "placeholder")
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("quantize_per_tensor" in target for target in targets)
    with torch.no_grad():  # the reference (quantize / dequantize) graph, uncompiled: quantization error only
        reference = student.image_encoder(calibration[:1])
        output = program.module()(calibration[:1])
    error = float((output - reference).norm() / reference.norm())
    assert 0 < error < 0.1


def test_compiled_int8_encoder_round_trips_through_its_archive(tmp_path, student, calibration, program):
    path = tmp_path / "encoder_int8.pt2"
    InductorSam.save(program, student, path)
    runtime = InductorSam.load(student, path)
    with torch.no_grad():
        reference = student.encode(calibration)  # (3, 64, 8, 8)
        output = runtime.encode(calibration)
        uncompiled = torch.cat([program.module()(image[None]) for image in calibration])
    assert output.shape == reference.shape
    assert float((output - reference).norm() / reference.norm()) < 0.1
    # the compiled int8 kernels compute what the quantize / dequantize graph describes
    assert float((output - uncompiled).norm() / uncompiled.norm()) < 0.05
    # the decoder is the float model's, compiled: same logits up to float rounding, for any prompt count
    for count in (1, 3):
        coords, labels = torch.rand(count, 1, 2, generator=torch.Generator().manual_seed(count)) * 128, torch.ones(count, 1)
        masks, iou, _ = runtime.decode(output[:1], coords, labels)
        with torch.no_grad():
            expected, expected_iou, _ = student.decode(output[:1], coords, labels)
        assert masks.shape == (count, 3, 32, 32)
        assert torch.allclose(masks, expected, atol=1e-4) and torch.allclose(iou, expected_iou, atol=1e-5)
    assert runtime.mask_threshold == student.mask_threshold
    # so the predictor and the everything-mode generator take it as they take a Sam
    picture = (torch.rand(60, 90, 3, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8).numpy()
    generator = MaskGenerator(runtime, points_per_side=4, pred_iou_thresh=-10, stability_score_thresh=0)
    records = generator.generate(picture)
    assert generator.stats.decoder_prompts == 16 and all(r["segmentation"].shape == (60, 90) for r in records)


def test_archives_that_do_not_fit_are_refused_by_name(tmp_path, student, program):
    with pytest.raises(SlimlabError, match="no such int8 encoder archive"):
        InductorSam.load(student, tmp_path / "missing.pt2")
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(SlimlabError, match=f"{garbage}: not a readable torch.export archive"):
        InductorSam.load(student, garbage)
    good = tmp_path / "good.pt2"
    InductorSam.save(program, student, good)
    header = json.loads(zipfile.ZipFile(good).read(header_name(good)))
    for changes, message in (({"version": FORMAT_VERSION + 1}, "format version"),
                             ({"image_size": 64}, "quantized for 64 px input, the model takes 128"),
                             ({"sha256": "0" * 64}, "checksum mismatch")):
        path = tmp_path / f"header_{'_'.join(changes)}.pt2"
        torch.export.save(program, str(path), extra_files={"slimlab.json": json.dumps({**header, **changes})})
        with pytest.raises(SlimlabError, match=message):
            InductorSam.load(student, path)


def header_name(path):
    return next(name for name in zipfile.ZipFile(path).namelist() if name.endswith("/slimlab.json"))


def rewritten(source, target, change):
    """Copy a zip archive entry by entry, ``change(name, data) -> data`` on each (zipfile recomputes the CRCs)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, change(info.filename, old.read(info.filename)))


def test_a_damaged_or_altered_archive_is_refused(tmp_path, student, program):
    path = tmp_path / "encoder_int8.pt2"
    InductorSam.save(program, student, path)
    with zipfile.ZipFile(path) as archive:  # the largest tensor blob
        entry = max((i for i in archive.infolist() if not i.filename.endswith(".json")), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    # flip one byte inside the blob's stored bytes (entries are stored uncompressed): the CRC no longer matches
    start = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
    data[start + entry.file_size // 2] ^= 0xFF
    damaged = tmp_path / "damaged.pt2"
    damaged.write_bytes(bytes(data))
    with pytest.raises(SlimlabError, match=f"{damaged}: not a readable torch.export archive.*CRC"):
        InductorSam.load(student, damaged)
    # the same change with fresh CRCs (a tool that rewrote the archive) is caught by the header's sha256
    altered = tmp_path / "altered.pt2"
    rewritten(path, altered, lambda name, blob: (blob[:len(blob) // 2] + bytes([blob[len(blob) // 2] ^ 0xFF])
                                                 + blob[len(blob) // 2 + 1:]) if name == entry.filename else blob)
    with pytest.raises(SlimlabError, match=f"{altered}: checksum mismatch"):
        InductorSam.load(student, altered)


def test_calibration_must_be_a_batch_of_images(student):
    with pytest.raises(SlimlabError, match=r"expected a \(N, 3, S, S\) batch"):
        quantize_encoder(student.image_encoder, torch.zeros(3, 128, 128))
    with pytest.raises(SlimlabError, match="needs calibration images"):
        InductorSam.from_model(student)
