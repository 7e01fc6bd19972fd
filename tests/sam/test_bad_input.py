"""Damaged checkpoints, odd flags, bad settings and malformed COCO files: each is named, exits 2, writes nothing."""

import json

import cv2
import numpy as np
import pytest
import torch

from slimlab.cli import main
from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model, load_model
from slimlab.sam.data import FolderDataset
from slimlab.sam.train import TrainConfig
from slimlab.sam.transforms import as_rgb_uint8


def segment(image_path, checkpoint_path, out, *flags):
    return main(["sam", "segment", str(image_path), "--checkpoint", str(checkpoint_path), "--out", str(out), *flags])


def test_checkpoints_with_nan_or_integer_weights_are_refused(tmp_path, image):
    model = build_model("shapes_student")
    state = model.state_dict()
    state["mask_decoder.iou_token.weight"][0, 0] = float("nan")
    torch.save({"spec": dict(model.spec), "model": state}, tmp_path / "nan.pth")
    with pytest.raises(SlimlabError, match=r"nan\.pth: 1 tensor\(s\) hold NaN or inf values: mask_decoder\.iou_token"):
        load_model(tmp_path / "nan.pth")
    integers = {name: tensor.to(torch.int64) for name, tensor in build_model("shapes_student").state_dict().items()}
    torch.save({"spec": dict(model.spec), "model": integers}, tmp_path / "int.pth")
    with pytest.raises(SlimlabError, match=r"int\.pth: does not match .*\n  dtype mismatches \(\d+\): .*torch\.int64"):
        load_model(tmp_path / "int.pth")
    assert segment(image, tmp_path / "nan.pth", tmp_path / "out", "--points", "45,30") == 2
    assert not (tmp_path / "out").exists()


def test_a_state_dict_without_a_layout_name_suggests_model(tmp_path):
    torch.save(build_model("shapes_student").state_dict(), tmp_path / "raw.pth")  # no spec: vit_t is guessed
    with pytest.raises(SlimlabError, match=r"'vit_t' was guessed; pass the layout name \(--model"):
        load_model(tmp_path / "raw.pth")
    assert load_model(tmp_path / "raw.pth", "shapes_student").spec["name"] == "shapes_student"


@pytest.mark.parametrize("flags, message", [
    (["--everything", "--pred-iou-thresh", "nan"], "--pred-iou-thresh nan: must be a finite number"),
    (["--everything", "--stability-thresh", "5"], "--stability-thresh 5.0: must be at most 1"),
    (["--everything", "--hierarchical", "--tau", "nan"], "--tau nan: must be a finite logit"),
    (["--everything", "--hierarchical", "--cover-margin", "-1"], "--cover-margin -1.0: must be a finite number"),
    (["--box", "1,1,20,20", "--box", "2,2,30,30"], "--box given twice"),
    (["--box", ""], "box '': expected 4 comma-separated numbers"),
    (["--points", "-5,10"], "point prompt (-5, 10) lies outside"),  # a value, not an unknown option
])
def test_segment_flags_are_checked(tmp_path, checkpoint, image, capsys, flags, message):
    assert segment(image, checkpoint, tmp_path / "out", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_repeated_points_add_up(tmp_path, checkpoint, image):
    assert segment(image, checkpoint, tmp_path / "one", "--points", "45,30", "10,10", "--labels", "1", "0") == 0
    assert segment(image, checkpoint, tmp_path / "two", "--points", "45,30", "--points", "10,10",
                   "--labels", "1", "--labels", "0") == 0
    assert (tmp_path / "one" / "masks.json").read_text() == (tmp_path / "two" / "masks.json").read_text()


@pytest.mark.parametrize("field, value, message", [
    ("lr", float("inf"), "lr=inf: must be a positive finite number"),
    ("weight_decay", -5.0, "weight_decay=-5.0: must be a finite number >= 0"),
    ("embedding_weight", float("nan"), "embedding_weight=nan: must be a finite number >= 0"),
    ("seed", -1, r"seed=-1: must be in \[0, 2\*\*32\)"),
])
def test_training_settings_are_checked(field, value, message):
    with pytest.raises(SlimlabError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("flags, message", [
    (["--teacher-steps", "0"], "--teacher-steps 0: must be at least 1"),
    (["--train-images", "0"], "--train-images 0: must be at least 1"),
    (["--annotations", "x.json"], "--annotations label the images of --images"),
])
def test_distill_flags_are_checked_before_any_training(tmp_path, capsys, flags, message):
    assert main(["sam", "distill", "steps=1", *flags, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def coco_folder(tmp_path, coco):
    (tmp_path / "images").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    return FolderDataset(tmp_path / "images", 64, tmp_path / "coco.json")


SQUARE = [[5, 5, 30, 5, 30, 30, 5, 30]]


@pytest.mark.parametrize("coco, message", [
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 99, "segmentation": SQUARE}]},
     "annotation 0: image_id 99 is not the id of any entry of 'images'"),
    ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], "annotations": []},
     r"images\[1\]: image id 1 appears twice"),
    ({"images": [{"id": 1, "file_name": "other.png"}], "annotations": [{"image_id": 1, "segmentation": SQUARE}]},
     "none of the 1 images it annotates is in"),
    ({"images": [], "annotations": {}}, "needs 'images' and 'annotations' lists"),
])
def test_malformed_coco_files_are_named(tmp_path, coco, message):
    with pytest.raises(SlimlabError, match=message):
        coco_folder(tmp_path, coco)


def test_polygon_coordinates_far_outside_the_image_are_refused(tmp_path):
    dataset = coco_folder(tmp_path, {"images": [{"id": 1, "file_name": "a.png"}],
                                     "annotations": [{"image_id": 1, "segmentation": [[5, 5, 1e30, 5, 30, 30]]}]})
    with pytest.raises(SlimlabError, match=r"annotation 0 \(image a\.png\): polygon coordinate 1e\+30 lies far"):
        dataset[0]


@pytest.mark.parametrize("low, high", [(0, 4095), (10, 200)])  # 12-bit data; 8-bit values stored in 16 bits
def test_sixteen_bit_images_keep_the_top_8_of_the_bits_they_use(low, high):
    grey = np.full((16, 16), low, np.uint16)
    grey[8:] = high
    shift = 4 if high == 4095 else 0
    assert sorted(np.unique(as_rgb_uint8(grey)).tolist()) == [low >> shift, high >> shift]


def test_negative_numbers_in_any_notation_are_values_not_options(tmp_path, checkpoint, image, capsys):
    for flags in (["--points", "-1e1,2e1"], ["--points", "-.5,3"], ["--box", "-1e1,0,10,10"]):
        assert segment(image, checkpoint, tmp_path / "out", *flags) == 2
        error = capsys.readouterr().err
        assert "lies outside" in error or "box inside the 90x60 image" in error  # read as numbers, then checked
    assert segment(image, checkpoint, tmp_path / "out", "--everything", "--points-per-side", "4", "--hierarchical",
                   "--tau", "-1e9") == 0


def test_distill_refuses_a_student_of_another_size_before_training_the_teacher(tmp_path, capsys, monkeypatch):
    import slimlab.sam.train as train_module

    def no_training(*args, **kwargs):
        raise AssertionError("the teacher was trained before the layouts were compared")
    monkeypatch.setattr(train_module, "train_supervised", no_training)
    assert main(["sam", "distill", "steps=1", "--student", "vit_t", "--train-images", "2", "--test-images", "1",
                 "--out", str(tmp_path / "out")]) == 2
    assert "teacher and student embeddings differ" in capsys.readouterr().err
