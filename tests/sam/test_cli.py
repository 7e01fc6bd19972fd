import json

import cv2
import numpy as np
import pytest
import torch

from slimlab.cli import main
from slimlab.sam.build import build_model, save_model
from slimlab.sam.mask_utils import rle_to_mask


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "student.pth"
    save_model(build_model("shapes_student"), path)
    return path


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.png"
    picture = np.full((60, 90, 3), 40, np.uint8)
    cv2.circle(picture, (45, 30), 15, (200, 50, 50), -1)
    cv2.imwrite(str(path), picture)
    return path


def test_segment_with_points_writes_pngs_rle_and_overlay(tmp_path, checkpoint, image):
    out = tmp_path / "out"
    code = main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--points", "45,30", "10,10",
                 "--labels", "1", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "masks.json").read_text())
    assert report["mode"] == "prompt" and len(report["annotations"]) == 3
    first = cv2.imread(str(out / "mask_000.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert first.shape == (60, 90)
    assert np.array_equal(rle_to_mask(report["annotations"][0]["segmentation"]), first)
    assert cv2.imread(str(out / "overlay.png")).shape == (60, 90, 3)


def test_segment_box_and_everything_modes(tmp_path, checkpoint, image):
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--box", "20,10,70,50",
                 "--single-mask", "--out", str(tmp_path / "box")]) == 0
    assert len(json.loads((tmp_path / "box" / "masks.json").read_text())["annotations"]) == 1
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--everything", "--hierarchical",
                 "--points-per-side", "8", "--pred-iou-thresh", "-10", "--stability-thresh", "0",
                 "--tau", "0", "--out", str(tmp_path / "all")]) == 0
    report = json.loads((tmp_path / "all" / "masks.json").read_text())
    assert report["mode"] == "hierarchical" and report["decoder_prompts"] == 4 + 60 - report["skipped_points"]


def test_bad_inputs_fail_cleanly(tmp_path, checkpoint, image, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "never"
    assert main(["sam", "segment", str(corrupt), "--checkpoint", str(checkpoint), "--points", "1,1",
                 "--out", str(out)]) == 2
    assert "corrupt.jpg: not a readable image" in capsys.readouterr().err and not out.exists()
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--points", "95,10",
                 "--out", str(out)]) == 2
    assert "outside the 90x60 image" in capsys.readouterr().err and not out.exists()
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "no prompt" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((4, 4, 3), np.uint8))
    assert main(["sam", "segment", str(tiny), "--checkpoint", str(checkpoint), "--points", "1,1"]) == 2
    assert "at least 8 pixels" in capsys.readouterr().err
    state = torch.load(checkpoint, weights_only=True)
    del state["model"]["mask_decoder.iou_token.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    assert main(["sam", "export-onnx", "--checkpoint", str(broken), "--out", str(out)]) == 2
    assert "missing keys (1): mask_decoder.iou_token.weight" in capsys.readouterr().err and not out.exists()


def test_quantize_and_export_commands(tmp_path, checkpoint):
    out = tmp_path / "q"
    assert main(["sam", "quantize", "--checkpoint", str(checkpoint), "--method", "minmax",
                 "--calibration-images", "2", "--out", str(out)]) == 0
    table = json.loads((out / "scales.json").read_text())
    assert table["mask_decoder.iou_prediction_head.layers.0"]["bits"] == 8
    from slimlab.sam.build import load_model
    from slimlab.sam.quantize import apply_scale_table
    apply_scale_table(load_model(out / "model.pth"), table)  # float weights + JSON scales rebuild the model
    assert main(["sam", "export-onnx", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "onnx")]) == 0
    parity = json.loads((tmp_path / "onnx" / "parity.json").read_text())
    assert max(parity.values()) < 1e-4
    assert main(["sam", "quantize", "--checkpoint", str(checkpoint), "--int8-onnx", "--calibration-images", "2",
                 "--out", str(tmp_path / "int8")]) == 0
    report = json.loads((tmp_path / "int8" / "quantize.json").read_text())
    assert {p.name for p in (tmp_path / "int8").glob("*.onnx")} == {"encoder.onnx", "decoder.onnx",
                                                                     "encoder_int8.onnx", "decoder_int8.onnx"}
    assert 0.0 <= report["calibration_mask_iou_vs_float"] <= 1.0


def test_distill_command_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["sam", "distill", "steps=2", "images_per_step=2", "prompts_per_image=2", "max_rounds=2",
                 "--teacher-steps", "2", "--train-images", "4", "--test-images", "3", "--out", str(out)]) == 0
    result = json.loads((out / "distill.json").read_text())
    assert result["config"]["hard_prompts"] == "gt" and 0 <= result["test_point_miou"] <= 1
    assert (out / "student.pth").exists() and (out / "teacher.pth").exists()
    assert main(["sam", "distill", "hard_prompts=sometimes", "--out", str(out)]) == 2


def test_distill_on_a_folder_with_coco_masks_and_without_masks(tmp_path, checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    picture = np.full((64, 96, 3), 30, np.uint8)
    cv2.rectangle(picture, (10, 10), (40, 40), (250, 200, 0), -1)
    cv2.imwrite(str(folder / "a.png"), picture)
    coco = {"images": [{"id": 7, "file_name": "a.png"}],
            "annotations": [{"image_id": 7, "segmentation": [[10, 10, 40, 10, 40, 40, 10, 40]]},
                            {"image_id": 7, "segmentation": {"size": [64, 96], "counts": [64 * 50, 64 * 10,
                                                                                      64 * 36]}}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    from slimlab.sam.data import FolderDataset
    sample = FolderDataset(folder, 128, tmp_path / "coco.json")[0]
    assert sample.image.shape == (128, 128, 3) and sample.masks.shape[0] == 2
    # 96 -> 128: the square spans 10..40 -> ~13..54, the RLE columns 50..59 -> ~67..79, rows 0..63 -> 0..85
    assert sample.masks[0][30, 30] and not sample.masks[0][60, 60]
    assert sample.masks[1][:85, 70].all() and not sample.masks[1][:, 60].any()
    out = tmp_path / "run"
    common = ["steps=1", "images_per_step=1", "prompts_per_image=2", "max_rounds=1", "--images", str(folder),
              "--teacher", str(checkpoint), "--out", str(out)]
    assert main(["sam", "distill", *common, "--annotations", str(tmp_path / "coco.json")]) == 0
    # without masks the teacher labels the images: a teacher that always answers "the left half", confidently
    from slimlab.sam.train import TeacherLabeledDataset
    teacher = build_model("shapes_student")

    def decode(embeddings, coords, labels, boxes=None, masks=None, multimask_output=True):
        logits = torch.full((len(coords), 3, 32, 32), -10.0)
        logits[..., :16] = 10.0
        return logits, torch.tensor([[0.5, 0.9, 0.1]]).repeat(len(coords), 1), None
    teacher.decode = decode
    labelled = TeacherLabeledDataset(FolderDataset(folder, 128), teacher, points=3)[0]
    assert labelled.masks.shape == (3, 128, 128) and labelled.masks[:, :, :64].all() and not labelled.masks[:, :, 64:].any()
    assert main(["sam", "distill", "--images", str(folder), "--out", str(out)]) == 2  # no masks, no teacher
