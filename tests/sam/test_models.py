"""Checkpoint compatibility with the official layouts (fixtures hold names and shapes only, no weights)."""

import json
from pathlib import Path

import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model, load_checkpoint, load_model, save_model

FIXTURES = Path(__file__).parent
DTYPES = {"float32": torch.float32, "int64": torch.int64}


@pytest.mark.parametrize("name, fixture", [("vit_t", "tinysam_vit_t.json"), ("vit_b", "sam_vit_b.json")])
def test_state_dict_matches_official_checkpoint(name, fixture):
    fx = json.loads((FIXTURES / fixture).read_text())
    model = build_model(name, device="meta")
    ours = model.state_dict()
    theirs = {key: shape for key, shape, _ in fx["state_dict"]}
    assert sorted(set(theirs) - set(ours)) == [], "missing keys"
    assert sorted(set(ours) - set(theirs)) == [], "unexpected keys"
    wrong = [k for k in theirs if list(ours[k].shape) != theirs[k]]
    assert wrong == []
    assert sum(p.numel() for p in model.parameters()) == fx["num_params"]
    for top, count in fx["num_params_by_top_module"].items():
        assert sum(p.numel() for p in getattr(model, top).parameters()) == count
    buffers = dict(model.named_buffers())
    for key, shape, _ in fx["non_persistent_buffers"]:
        if key.endswith(".ab"):  # an eval-mode cache in the official code; we index the biases directly
            continue
        assert list(buffers[key].shape) == shape, key


@pytest.mark.parametrize("name", ["vit_t", "vit_b"])
def test_full_size_forward_shapes_on_meta(name):
    # Strides are invisible in parameter shapes: check the 1024 -> 64 x 64 embedding and the decoder outputs.
    model = build_model(name, device="meta")
    embedding = model.encode(torch.zeros(1, 3, 1024, 1024, device="meta"))
    assert tuple(embedding.shape) == (1, 256, 64, 64)
    low_res, iou, tokens = model.decode(embedding, torch.zeros(2, 1, 2, device="meta"),
                                        torch.ones(2, 1, device="meta"), mask_inputs=torch.zeros(2, 1, 256, 256,
                                                                                               device="meta"))
    assert tuple(low_res.shape) == (2, 3, 256, 256) and tuple(iou.shape) == (2, 3) and tuple(tokens.shape) == (2, 5, 256)


def fake_checkpoint(fixture: str) -> dict[str, torch.Tensor]:
    fx = json.loads((FIXTURES / fixture).read_text())
    return {key: torch.zeros(shape, dtype=DTYPES[dtype]) for key, shape, dtype in fx["state_dict"]}


def test_fake_official_tinysam_checkpoint_loads_strictly(tmp_path):
    state = fake_checkpoint("tinysam_vit_t.json")
    path = tmp_path / "tinysam.pth"
    torch.save(state, path)
    model = load_model(path)  # layout told apart by its keys
    assert model.spec["name"] == "vit_t"
    assert torch.count_nonzero(model.mask_decoder.iou_token.weight) == 0  # the zeros really were loaded
    # official files may omit the BatchNorm counters
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    load_checkpoint(build_model("vit_t"), path)


def test_checkpoint_with_missing_and_unexpected_keys_lists_them(tmp_path):
    state = fake_checkpoint("tinysam_vit_t.json")
    del state["mask_decoder.iou_token.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["prompt_encoder.no_mask_embed.weight"] = torch.zeros(2, 256)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(SlimlabError) as error:
        load_checkpoint(build_model("vit_t"), path)
    message = str(error.value)
    assert "missing keys (1): mask_decoder.iou_token.weight" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "prompt_encoder.no_mask_embed.weight: file (2, 256) vs model (1, 256)" in message


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a zip file")
    with pytest.raises(SlimlabError, match="not a readable"):
        load_model(path)


def test_own_checkpoint_roundtrip_keeps_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("shapes_student")
    path = tmp_path / "student.pth"
    save_model(model, path)
    again = load_model(path)
    image = torch.randn(1, 3, 128, 128)
    assert torch.equal(model.encode(image), again.encode(image))


def test_checkpoint_with_a_bad_spec_is_named(tmp_path):
    state = build_model("shapes_student").state_dict()
    listed = tmp_path / "listed.pth"
    torch.save({"spec": ["shapes_student"], "model": state}, listed)
    with pytest.raises(SlimlabError, match=r"listed.pth: 'spec' should be a dict like \{'name': 'vit_t'\}"):
        load_model(listed)
    assert load_model(listed, "shapes_student").spec["name"] == "shapes_student"  # the tensors are still usable
    unknown = tmp_path / "unknown.pth"
    torch.save({"spec": {"name": "vit_z"}, "model": state}, unknown)
    with pytest.raises(SlimlabError, match=r"unknown.pth: layout 'vit_z' \(from its spec\) is not a known SAM model; "
                                           r"known: shapes_student, shapes_teacher, tinysam, vit_b, vit_t"):
        load_model(unknown)


def test_tinyvit_layout_at_another_input_size_shares_its_weights(tmp_path):
    torch.manual_seed(0)
    small = build_model("shapes_student")
    large = build_model("shapes_student", image_size=256)
    assert large.image_size == 256 and large.spec == {"name": "shapes_student", "image_size": 256}
    assert build_model("shapes_student", image_size=128).spec == {"name": "shapes_student"}
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in large.state_dict().items()}
    large.load_state_dict(small.state_dict())
    image = torch.randn(1, 3, 256, 256)
    embeddings = large.encode(image)
    assert embeddings.shape == (1, 64, 16, 16)  # 256 px / stride 16
    path = tmp_path / "large.pth"
    save_model(large, path)
    again = load_model(path)
    assert again.image_size == 256 and torch.equal(again.encode(image), embeddings)


def test_another_input_size_is_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(SlimlabError, match=r"image_size=512: only TinyViT layouts .*'shapes_teacher'"):
        build_model("shapes_teacher", image_size=512)
    with pytest.raises(SlimlabError, match=r"image_size=200: must be a positive multiple of the embedding stride 16"):
        build_model("shapes_student", image_size=200)
    path = tmp_path / "odd.pth"
    torch.save({"spec": {"name": "shapes_student", "image_size": "256"},
                "model": build_model("shapes_student").state_dict()}, path)
    with pytest.raises(SlimlabError, match=r"odd.pth: spec 'image_size' should be an integer but is '256'"):
        load_model(path)
