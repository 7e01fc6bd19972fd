import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.quantize import (
    ActivationQuantizer,
    calibrate,
    dynamic_int8,
    fake_quantize,
    prepare,
    quantization_error,
)
from slimlab.sam.scale_tables import apply_scale_table, load_scale_table, save_scale_table


def test_uniform_quantizer_error_bounds():
    values = torch.linspace(-1, 1, 1001)
    for bits in (4, 6, 8):
        step = 1 / (2 ** (bits - 1) - 1)
        assert quantization_error(values, bits) <= step / 2 + 1e-7  # round-to-nearest: half a step at most
    clipped = fake_quantize(torch.tensor([5.0, -5.0]), torch.tensor(0.1), 4)
    assert torch.allclose(clipped, torch.tensor([0.7, -0.8]))  # clipped to the levels [-8, 7]


def test_twin_softmax_uses_the_fine_step_below_the_split():
    quantizer = ActivationQuantizer(8, "softmax")
    quantizer.scale = torch.tensor(1 / 127)
    quantizer.fine_scale = torch.tensor(1 / 127 / 16)
    small = torch.rand(1000) * 0.05  # below the split 127 / (127 * 16) = 0.0625
    large = 0.1 + torch.rand(1000) * 0.9
    assert (quantizer(small) - small).abs().max() <= 1 / 127 / 32 + 1e-7
    assert (quantizer(large) - large).abs().max() <= 1 / 127 / 2 + 1e-7


def test_gelu_negatives_get_the_fixed_step():
    quantizer = ActivationQuantizer(8, "gelu")
    quantizer.scale = torch.tensor(4.0 / 127)
    negatives = -torch.rand(100) * 0.17
    assert (quantizer(negatives) - negatives).abs().max() <= 0.16997 / 128 / 2 + 1e-7


def calibration_inputs():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 128, 128, generator=generator)
    coords = torch.rand(4, 1, 2, generator=generator) * 127
    return images, coords, torch.ones(4, 1), torch.tensor([0, 0, 1, 1])


def test_prepare_wraps_every_layer_and_matmul():
    model = build_model("shapes_student")
    _, layers = prepare(model, 8)
    linears = sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))
                  for m in model.modules()) - 1  # minus the unused classifier head
    wrapped = [name for name in layers if ".matmul." not in name]
    assert len(wrapped) == linears
    attention = [m for m in model.modules() if hasattr(m, "num_heads") and hasattr(m, "proj") or
                 hasattr(m, "q_proj")]
    assert sum(name.endswith(".matmul.q") for name in layers) == len(attention)


def test_w8_error_is_small_and_smaller_than_w4_and_reloads():
    torch.manual_seed(0)
    model = build_model("shapes_student")
    images, coords, labels, owners = calibration_inputs()
    with torch.no_grad():
        reference = model.decode(model.encode(images)[owners], coords, labels)[0]
        errors = {}
        for bits in (4, 8):
            quantized, table = calibrate(model, images, coords, labels, owners, bits=bits, method="minmax")
            output = quantized.decode(quantized.encode(images)[owners], coords, labels)[0]
            errors[bits] = float((output - reference).abs().mean() / reference.abs().mean())
        assert errors[8] < 0.05 and errors[8] < errors[4] / 4
        again = apply_scale_table(model, table)  # W8 table rebuilt from floats + JSON scales
        reloaded = again.decode(again.encode(images)[owners], coords, labels)[0]
        assert torch.allclose(reloaded, output, atol=1e-6)


def test_grid_search_does_not_increase_the_objective():
    torch.manual_seed(0)
    model = build_model("shapes_student")
    images, coords, labels, owners = calibration_inputs()
    from slimlab.sam.quantize import output_divergence
    with torch.no_grad():
        reference = model.decode(model.encode(images)[owners], coords, labels)
        start, _ = calibrate(model, images, coords, labels, owners, bits=4, method="minmax")
        searched, _ = calibrate(model, images, coords, labels, owners, bits=4, method="search", candidates=3, rounds=1,
                                search_scope="mask_decoder.output_hypernetworks_mlps")
        before = output_divergence(reference, start.decode(start.encode(images)[owners], coords, labels)[:2])
        after = output_divergence(reference, searched.decode(searched.encode(images)[owners], coords, labels)[:2])
    assert after <= before + 1e-9


def test_dynamic_int8_is_close_to_float():
    torch.manual_seed(0)
    model = build_model("shapes_student")
    images, coords, labels, owners = calibration_inputs()
    int8 = dynamic_int8(model)
    assert any("quantized" in type(m).__module__ for m in int8.modules())
    with torch.no_grad():
        reference = model.decode(model.encode(images)[owners], coords, labels)[0]
        output = int8.decode(int8.encode(images)[owners], coords, labels)[0]
    assert float((output - reference).abs().mean() / reference.abs().mean()) < 0.05


@pytest.mark.parametrize("twin", [True, False])
def test_saved_scale_table_reloads_the_calibrated_model_exactly(tmp_path, twin):
    torch.manual_seed(0)
    model = build_model("shapes_student")
    images, coords, labels, owners = calibration_inputs()
    with torch.no_grad():
        calibrated, table = calibrate(model, images, coords, labels, owners, bits=8, method="minmax", twin=twin)
        save_scale_table(table, tmp_path / "scales.json")
        kinds = {entry["kind"] for entry in table.values()}
        assert {"softmax", "gelu"} <= kinds if twin else not {"softmax", "gelu"} & kinds
        reloaded = load_scale_table(model, tmp_path / "scales.json")  # twin read from the kinds
        expected = calibrated.decode(calibrated.encode(images)[owners], coords, labels)
        output = reloaded.decode(reloaded.encode(images)[owners], coords, labels)
    assert torch.equal(output[0], expected[0]) and torch.equal(output[1], expected[1])
    with pytest.raises(SlimlabError, match=f"scales.json: the table was calibrated {'with' if twin else 'without'} "
                                           f"twin-uniform quantizers .* but twin={not twin}"):
        load_scale_table(model, tmp_path / "scales.json", twin=not twin)


def test_scale_table_with_mixed_or_foreign_kinds_is_refused():
    model = build_model("shapes_student")
    _, table = calibrate(model, *calibration_inputs(), bits=8, method="minmax", twin=True)
    name = next(n for n, entry in table.items() if entry["kind"] == "softmax")
    table[name] = {**table[name], "kind": "uniform"}  # one plain quantizer among twin ones: edited by hand
    with pytest.raises(SlimlabError, match=f"'{name}' is kind 'uniform' with 8 bits but this model needs 'softmax'"):
        apply_scale_table(model, table)
    with pytest.raises(SlimlabError, match="lacks"):
        apply_scale_table(build_model("shapes_student"), {"x": {"kind": "uniform", "bits": 8, "scale": None}})
