import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from slimlab.cli import main
from slimlab.sam.build import build_model, save_model
from slimlab.sam.mask_utils import rle_to_mask


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
    assert (report["tau"], report["cover_margin"]) == (0.0, 0.0)
    # a margin of one dense stride also prompts the points near a covered area's edge or the image border
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--everything", "--hierarchical",
                 "--points-per-side", "8", "--pred-iou-thresh", "-10", "--stability-thresh", "0",
                 "--tau", "0", "--cover-margin", "1", "--out", str(tmp_path / "margin")]) == 0
    margin = json.loads((tmp_path / "margin" / "masks.json").read_text())
    assert margin["cover_margin"] == 1.0 and margin["decoder_prompts"] == 4 + 60 - margin["skipped_points"]
    assert margin["skipped_points"] < report["skipped_points"]


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


def mask_iou(reference: torch.Tensor, output: torch.Tensor) -> float:
    return float((reference & output).sum() / (reference | output).sum())


@pytest.mark.parametrize("twin_flags", [[], ["--no-twin"]])
def test_quantize_writes_a_table_that_reloads_the_calibrated_model(tmp_path, checkpoint, twin_flags):
    from slimlab.sam.build import load_model
    from slimlab.sam.cli_quantize import calibration_batch
    from slimlab.sam.quantize import calibrate
    from slimlab.sam.scale_tables import load_scale_table
    out = tmp_path / "q"
    assert main(["sam", "quantize", "--checkpoint", str(checkpoint), "--method", "minmax",
                 "--calibration-images", "2", *twin_flags, "--out", str(out)]) == 0
    report = json.loads((out / "quantize.json").read_text())
    assert report["twin"] == (twin_flags == [])
    model = load_model(checkpoint)
    images, coords, labels, owners = calibration_batch(model, 2, None)  # the prompts the command calibrated on
    with torch.no_grad():
        calibrated, _ = calibrate(model, images, coords, labels, owners, 8, "minmax", twin=twin_flags == [])
        reloaded = load_scale_table(load_model(out / "model.pth"), out / "scales.json")  # float weights + JSON
        expected = calibrated.decode(calibrated.encode(images)[owners], coords, labels)[0]
        output = reloaded.decode(reloaded.encode(images)[owners], coords, labels)[0]
        reference = model.decode(model.encode(images)[owners], coords, labels)[0]
    assert torch.equal(output, expected)  # the very model that was calibrated, not a twin / no-twin look-alike
    assert mask_iou(reference > 0, output > 0) == pytest.approx(report["calibration_mask_iou_vs_float"], abs=1e-7)


def test_export_and_int8_onnx_commands(tmp_path, checkpoint):
    assert main(["sam", "export-onnx", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "onnx")]) == 0
    parity = json.loads((tmp_path / "onnx" / "parity.json").read_text())
    assert max(parity.values()) < 1e-4
    out = tmp_path / "int8"
    assert main(["sam", "quantize", "--checkpoint", str(checkpoint), "--int8-onnx", "--calibration-images", "2",
                 "--out", str(out)]) == 0
    report = json.loads((out / "quantize.json").read_text())
    assert {p.name for p in out.glob("*.onnx")} == {"encoder.onnx", "decoder.onnx", "encoder_int8.onnx",
                                                    "decoder_int8.onnx"}
    # the reported agreement is that of the int8 graphs written, on the calibration prompts
    from slimlab.sam.build import load_model
    from slimlab.sam.cli_quantize import calibration_batch
    from slimlab.sam.onnx_runtime import OnnxRuntimeSam
    model = load_model(checkpoint)
    runtime = OnnxRuntimeSam(model, {part: out / f"{part}_int8.onnx" for part in ("encoder", "decoder")})
    images, coords, labels, owners = calibration_batch(model, 2, None)
    with torch.no_grad():
        reference, output = [torch.cat([m.decode(m.encode(images[i:i + 1]), coords[owners == i], labels[owners == i])[0]
                                        for i in range(len(images))]) > 0 for m in (model, runtime)]
    assert mask_iou(reference, output) == pytest.approx(report["calibration_mask_iou_vs_float"], abs=1e-6)
    assert report["calibration_mask_iou_vs_float"] > 0.8  # int8 MatMuls keep most of the float masks


def test_int8_inductor_quantize_then_segment_with_the_int8_encoder(tmp_path, checkpoint, image):
    out = tmp_path / "quantized"
    assert main(["sam", "quantize", "--checkpoint", str(checkpoint), "--int8-inductor", "--calibration-images", "2",
                 "--out", str(out)]) == 0
    report = json.loads((out / "quantize.json").read_text())
    assert (out / "encoder_int8.pt2").is_file() and report["calibration_images"] == 2
    assert report["calibration_mask_iou_vs_float"] > 0.8  # static int8 keeps most of the float masks
    assert report["float_layers"] and all(name.startswith("layers.") for name in report["float_layers"])  # depthwise
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--points", "45,30",
                 "--single-mask", "--out", str(tmp_path / "float")]) == 0
    # segment runs in a fresh process, as a user's next command would: nothing quantize imported is there
    segment = ["sam", "segment", str(image), "--checkpoint", str(checkpoint), "--points", "45,30", "--single-mask",
               "--int8-encoder", str(out / "encoder_int8.pt2"), "--out", str(tmp_path / "int8")]
    done = subprocess.run([sys.executable, "-c", f"import sys; from slimlab.cli import main; sys.exit(main({segment!r}))"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr and "Failed to load" not in done.stderr  # library noise muted
    runs = {name: cv2.imread(str(tmp_path / name / "mask_000.png"), cv2.IMREAD_GRAYSCALE) > 0
            for name in ("float", "int8")}
    assert runs["int8"].shape == runs["float"].shape == (60, 90)
    assert mask_iou(torch.from_numpy(runs["float"]), torch.from_numpy(runs["int8"])) > 0.8


def test_distill_command_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sam", "distill", "steps=2", "images_per_step=2", "prompts_per_image=2", "max_rounds=2",
                 "--teacher-steps", "2", "--train-images", "4", "--test-images", "3", "--out", str(out)]) == 0
    result = json.loads((out / "distill.json").read_text())
    assert result["config"]["hard_prompts"] == "gt"
    # the reported mIoUs are those of the models written: `sam eval` on the same 3 test images agrees
    for name, key in (("student", "test_point_miou"), ("teacher", "teacher_point_miou")):
        capsys.readouterr()
        assert main(["sam", "eval", "--checkpoint", str(out / f"{name}.pth"), "--test-images", "3"]) == 0
        assert json.loads(capsys.readouterr().out)["miou"] == pytest.approx(result[key], abs=1e-6)
    assert main(["sam", "distill", "hard_prompts=sometimes", "--out", str(out)]) == 2


def test_distill_encoder_only_gives_the_student_the_teachers_decoder(tmp_path):
    out = tmp_path / "run"
    assert main(["sam", "distill", "steps=2", "images_per_step=2", "--encoder-only", "--teacher-steps", "2",
                 "--train-images", "3", "--test-images", "2", "--out", str(out)]) == 0
    result = json.loads((out / "distill.json").read_text())
    assert result["encoder_only"] and 0 <= result["test_point_miou"] <= 1
    from slimlab.sam.build import load_model
    teacher, student = load_model(out / "teacher.pth"), load_model(out / "student.pth")
    for part in ("prompt_encoder", "mask_decoder"):
        taught, learned = getattr(teacher, part).state_dict(), getattr(student, part).state_dict()
        assert all(torch.equal(taught[key], learned[key]) for key in taught)


def test_distill_and_eval_with_annotated_background(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sam", "distill", "steps=1", "images_per_step=2", "prompts_per_image=2", "max_rounds=1",
                 "--teacher-steps", "1", "--train-images", "2", "--test-images", "2", "--annotate-background",
                 "--out", str(out)]) == 0
    result = json.loads((out / "distill.json").read_text())
    evaluated = {}
    for flags in ([], ["--annotate-background"]):
        capsys.readouterr()
        assert main(["sam", "eval", "--checkpoint", str(out / "teacher.pth"), "--test-images", "2", *flags]) == 0
        evaluated[bool(flags)] = json.loads(capsys.readouterr().out)
    # the background regions are scored too, under their own tag, and distill reported that set's mIoU
    assert evaluated[True]["instances"] > evaluated[False]["instances"]
    assert "stuff" in evaluated[True]["miou_by_tag"] and "stuff" not in evaluated[False]["miou_by_tag"]
    assert result["teacher_point_miou"] == pytest.approx(evaluated[True]["miou"], abs=1e-6)
    assert main(["sam", "eval", "--checkpoint", str(out / "teacher.pth"), "--images", str(tmp_path),
                 "--annotate-background"]) == 2


def test_distill_on_a_folder_with_coco_masks_and_without_masks(tmp_path, checkpoint, capsys):
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
    # settings of what would be built here are refused when it is given instead
    for extra in (["--teacher-steps", "5"], ["--train-images", "8"], ["--test-images", "8"], ["--annotate-background"]):
        capsys.readouterr()
        assert main(["sam", "distill", *common, *extra]) == 2
        assert "would be ignored" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--everything", "--single-mask"], "--single-mask applies to point / box prompts"),
    (["--everything", "--tau", "7"], "--tau is a setting of --hierarchical's covered area"),
    (["--everything", "--cover-margin", "1"], "--cover-margin is a setting of --hierarchical's covered area"),
    (["--points", "5,5", "--cover-margin", "1"], "--cover-margin: everything-mode settings"),
    (["--everything", "--labels", "1"], "--everything takes no --points, --labels or --box"),
    (["--points", "5,5", "--points-per-side", "16", "--tau", "7"], "--points-per-side, --tau: everything-mode"),
    (["--box", "1,1,20,20", "--labels", "1"], "--labels label the --points"),
])
def test_segment_refuses_flags_it_would_ignore(tmp_path, checkpoint, image, capsys, flags, message):
    out = tmp_path / "never"
    assert main(["sam", "segment", str(image), "--checkpoint", str(checkpoint), *flags, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--int8-onnx", "--bits", "6"], "--bits 6: settings of the calibrated fake quantization"),
    (["--int8-onnx", "--method", "minmax", "--no-twin"], "--method, --no-twin: settings of the calibrated"),
    (["--int8-onnx", "--candidates", "5", "--rounds", "1"], "--candidates, --rounds: settings"),
    (["--method", "percentile", "--rounds", "1"], "--method percentile does not search"),
    (["--int8-inductor", "--bits", "6"], "--bits 6: settings of the calibrated fake quantization; --int8-inductor"),
    (["--int8-onnx", "--int8-inductor"], "choose one per run"),
])
def test_quantize_refuses_flags_it_would_ignore(tmp_path, checkpoint, capsys, flags, message):
    out = tmp_path / "never"
    assert main(["sam", "quantize", "--checkpoint", str(checkpoint), *flags, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_segment_names_an_image_too_elongated_for_the_model(tmp_path, checkpoint, capsys):
    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.zeros((8, 3000, 3), np.uint8))  # 8 * 128 / 3000 = 0.34 rows after resizing
    out = tmp_path / "never"
    assert main(["sam", "segment", str(strip), "--checkpoint", str(checkpoint), "--points", "5,5",
                 "--out", str(out)]) == 2
    assert f"{strip}: image is 3000x8 pixels" in capsys.readouterr().err and not out.exists()


def always_everything(model):
    """Make the mask decoder answer "the whole image" for any prompt: zero the last upscaling conv and the
    hypernetworks' last layers, biases 1 -> every logit is 1 x GELU(1) x channels > 0."""
    decoder = model.mask_decoder
    with torch.no_grad():
        decoder.output_upscaling[3].weight.zero_()
        decoder.output_upscaling[3].bias.fill_(1.0)
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.zero_()
            mlp.layers[-1].bias.fill_(1.0)
    return model


def test_eval_on_shapes_by_hand(tmp_path, capsys):
    from slimlab.sam.shapes import ShapesDataset
    path = tmp_path / "whole.pth"
    save_model(always_everything(build_model("shapes_student")), path)
    assert main(["sam", "eval", "--checkpoint", str(path), "--test-images", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    # a whole-image mask against a GT mask of area A in a 128 x 128 image has IoU A / 128^2
    areas = [mask.sum() / 128 ** 2 for i in range(2) for mask in ShapesDataset(2, "test")[i].masks]
    assert report["instances"] == len(areas) and report["images"] == 2 and report["prompt"] == "point"
    assert report["miou"] == pytest.approx(np.mean(areas), abs=1e-6) and "miou_by_click" not in report
    # corrective clicks change nothing for a model that always answers the whole image: the same mIoU each click
    assert main(["sam", "eval", "--checkpoint", str(path), "--test-images", "2", "--clicks", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["miou_by_click"] == pytest.approx([np.mean(areas)] * 3, abs=1e-6)


def test_eval_on_a_coco_folder_by_hand(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((128, 128, 3), 60, np.uint8))  # model-sized: no resize
    coco = {"images": [{"id": 1, "file_name": "a.png"}],
            "annotations": [{"image_id": 1, "segmentation": [[32, 32, 63, 32, 63, 63, 32, 63]]},  # 32 x 32
                            {"image_id": 1, "segmentation": {"size": [128, 128],  # columns 100..109
                                                             "counts": [128 * 100, 128 * 10, 128 * 18]}},
                            {"image_id": 1, "segmentation": [[2, 2, 5, 2, 5, 5, 2, 5]]}]}  # 4 x 4 = 16 pixels
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    path = tmp_path / "whole.pth"
    save_model(always_everything(build_model("shapes_student")), path)
    assert main(["sam", "eval", "--checkpoint", str(path), "--images", str(folder), "--annotations",
                 str(tmp_path / "coco.json"), "--prompt", "box"]) == 0
    report = json.loads(capsys.readouterr().out)
    # whole-image predictions: IoU = mask area / 128^2
    # IoU 1024 / 16384 = 0.0625, 1280 / 16384 = 0.078125 and 16 / 16384
    assert report["instances"] == 3 and report["miou"] == pytest.approx((1024 + 1280 + 16) / 16384 / 3)
    assert report["instances_skipped_under_16_pixels"] == 0
    coco["annotations"][2]["segmentation"] = [[2, 2, 4, 2, 4, 5, 2, 5]]  # 3 x 4 = 12 pixels: skipped
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert main(["sam", "eval", "--checkpoint", str(path), "--images", str(folder), "--annotations",
                 str(tmp_path / "coco.json"), "--prompt", "box"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["instances"] == 2 and report["miou"] == pytest.approx((0.0625 + 0.078125) / 2)
    assert report["instances_skipped_under_16_pixels"] == 1
    assert main(["sam", "eval", "--checkpoint", str(path), "--images", str(folder)]) == 2  # no masks
    assert "no ground-truth masks" in capsys.readouterr().err
    assert main(["sam", "eval", "--checkpoint", str(path), "--annotations", str(tmp_path / "coco.json")]) == 2
    assert "--annotations belongs to --images" in capsys.readouterr().err
