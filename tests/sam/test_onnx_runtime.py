import onnx
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.onnx_runtime import OnnxRuntimeSam, quantize_onnx_int8


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model("shapes_student").eval()


def prompts(model):
    generator = torch.Generator().manual_seed(3)
    coords = torch.rand(4, 2, 2, generator=generator) * model.image_size   # (P, N, 2)
    labels = torch.tensor([[1.0, 0.0]]).repeat(4, 1)                      # (P, N)
    boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 10.0, 60.0, 30.0]])
    return coords, labels, boxes


@torch.no_grad()
def test_float_graphs_through_the_wrapper_match_sam_decode(student, tmp_path):
    runtime = OnnxRuntimeSam.from_model(student, tmp_path, int8=False, threads=1)
    image = torch.rand(1, 3, student.image_size, student.image_size) * 255
    embeddings = student.encode(student.preprocess(image))
    assert torch.allclose(runtime.encode(runtime.preprocess(image)), embeddings, atol=1e-4)
    coords, labels, boxes = prompts(student)
    for call in ({"point_coords": coords, "point_labels": labels}, {"boxes": boxes},
                 {"point_coords": coords[:2], "point_labels": labels[:2], "boxes": boxes}):
        expected_logits, expected_iou, _ = student.decode(embeddings, **call)
        logits, iou, tokens = runtime.decode(embeddings, **call)
        assert tokens is None and logits.shape == expected_logits.shape
        assert torch.allclose(logits, expected_logits, atol=1e-3) and torch.allclose(iou, expected_iou, atol=1e-4)


@torch.no_grad()
def test_int8_graphs_use_integer_kernels_and_stay_close(student, tmp_path):
    runtime = OnnxRuntimeSam.from_model(student, tmp_path, int8=True, threads=1)
    for part in ("encoder", "decoder"):
        ops = {node.op_type for node in onnx.load(str(tmp_path / f"{part}_int8.onnx")).graph.node}
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, part
    image = torch.rand(1, 3, student.image_size, student.image_size) * 255
    embeddings = student.encode(student.preprocess(image))
    quantized = runtime.encode(runtime.preprocess(image))
    # int8 activations: the embedding error is a small fraction of the embeddings' own spread
    assert (quantized - embeddings).abs().mean() < 0.1 * embeddings.std()
    coords, labels, _ = prompts(student)
    logits, _, _ = runtime.decode(embeddings, coords, labels)
    expected, _, _ = student.decode(embeddings, coords, labels)
    assert ((logits > 0) == (expected > 0)).float().mean() > 0.9


def test_missing_graph_is_named(tmp_path):
    with pytest.raises(SlimlabError, match="encoder.onnx"):
        quantize_onnx_int8({"encoder": tmp_path / "encoder.onnx", "decoder": tmp_path / "decoder.onnx"}, tmp_path)
