import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from slimlab.cli import main
from slimlab.core.image_metrics import psnr
from slimlab.core.image_tasks import LABEL_CLASSES, LABEL_PALETTE, render_labels, voronoi_labels
from slimlab.core.images import read_image
from slimlab.gan.checkpoint import load_generator, save_discriminator
from slimlab.gan.evaluate import generate, load_test_split
from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, build_generator
from tests.gan.conftest import write_rgb


def test_translate_folder_keeps_sizes_and_matches_the_generator(tmp_path, generator_file, capsys):
    rng = np.random.default_rng(0)
    write_rgb(tmp_path / "in" / "a.png", rng.integers(0, 256, (20, 30, 3)))  # not a multiple of 4: padded
    write_rgb(tmp_path / "in" / "b.jpg", rng.integers(0, 256, (16, 16, 3)))
    assert main(["gan", "translate", "--checkpoint", str(generator_file), str(tmp_path / "in"),
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert read_image(tmp_path / "out" / "a.png").shape == (20, 30, 3)
    generator, _ = load_generator(generator_file)
    source = torch.from_numpy(read_image(tmp_path / "in" / "b.jpg")).permute(2, 0, 1).float() / 127.5 - 1
    with torch.no_grad():
        expected = ((generator(source[None])[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(read_image(tmp_path / "out" / "b.png").astype(int) - expected.astype(int)).max() <= 1


def test_translate_bad_inputs_write_nothing(tmp_path, generator_file, capsys):
    write_rgb(tmp_path / "in" / "ok.png", np.zeros((8, 8, 3)))
    (tmp_path / "in" / "broken.png").write_bytes(b"nope")
    assert main(["gan", "translate", "--checkpoint", str(generator_file), str(tmp_path / "in"),
                 str(tmp_path / "out")]) == 2
    assert "broken.png: not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    assert main(["gan", "translate", "--checkpoint", str(generator_file), str(tmp_path / "empty"),
                 str(tmp_path / "out")]) == 2
    assert "no image files" in capsys.readouterr().err
    save_discriminator(tmp_path / "D.pt", PatchDiscriminator(3, 4))
    assert main(["gan", "translate", "--checkpoint", str(tmp_path / "D.pt"), str(tmp_path / "in"),
                 str(tmp_path / "out")]) == 2
    assert "holds a discriminator, not a generator" in capsys.readouterr().err
    assert main(["gan", "translate", "--checkpoint", str(generator_file), "--kind", "resnet", "--ngf", "8",
                 "--n-blocks", "1", str(tmp_path / "in"), str(tmp_path / "out")]) == 2
    assert "shape mismatches (file vs model): model.1.weight (4, 3, 7, 7) vs (8, 3, 7, 7)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    write_rgb(tmp_path / "tiny" / "dot.png", np.zeros((4, 4, 3)))
    assert main(["gan", "translate", "--checkpoint", str(generator_file), str(tmp_path / "tiny"),
                 str(tmp_path / "out")]) == 2
    assert "dot.png: 4x4 pixels; this resnet generator needs at least 8" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_onnx_runs_in_onnxruntime_at_another_size(tmp_path, generator_file):
    assert main(["gan", "export-onnx", "--checkpoint", str(generator_file), str(tmp_path / "g.onnx"),
                 "--size", "16"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 24, 32)).astype(np.float32)
    generator, _ = load_generator(generator_file)
    with torch.no_grad():
        expected = generator(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(None, {"image": x})[0] - expected).max() < 1e-4


def test_train_and_distill_from_the_command_line(tmp_path, paired_dir, capsys):
    tiny = ["ngf=8", "n_blocks=1", "ndf=4", "batch_size=2", "load_size=36", "crop_size=32", "checkpoint_every=1"]
    assert main(["gan", "train-teacher", "--data", str(paired_dir), "--out", str(tmp_path / "t"), "--steps", "1",
                 "--device", "cpu", *tiny]) == 0
    assert main(["gan", "distill", "--data", str(paired_dir), "--teacher", str(tmp_path / "t" / "G.pt"),
                 "--out", str(tmp_path / "s"), "--steps", "1", "--ratio", "0.5", "--device", "cpu",
                 "batch_size=2", "load_size=36", "crop_size=32"]) == 0
    _, spec = load_generator(tmp_path / "s" / "G.pt")
    assert spec.ngf == 4 and (tmp_path / "s" / "D_S_AB.pt").exists()
    assert main(["gan", "distill", "--data", str(tmp_path / "nowhere"), "--teacher", str(tmp_path / "t" / "G.pt"),
                 "--out", str(tmp_path / "s2"), "--device", "cpu"]) == 2
    assert "nowhere: image folder not found" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists()


def test_export_onnx_refuses_a_size_the_generator_cannot_take(tmp_path, generator_file, capsys):
    for size in ("0", "-4", "4"):  # a ResNet halves twice and needs 2x2 left: 8 is its smallest input
        assert main(["gan", "export-onnx", "--checkpoint", str(generator_file), str(tmp_path / "g.onnx"),
                     "--size", size]) == 2
        assert f"--size {size} must be at least 8 for this resnet generator" in capsys.readouterr().err
    assert not (tmp_path / "g.onnx").exists()


def test_distill_takes_a_plain_state_dict_teacher_with_its_architecture(tmp_path, paired_dir, capsys):
    torch.manual_seed(0)
    torch.save(build_generator(GeneratorSpec(ngf=8, n_blocks=1)).state_dict(), tmp_path / "latest_net_G.pth")
    torch.save(PatchDiscriminator(6, 4).state_dict(), tmp_path / "latest_net_D.pth")  # plain D: spec from shapes
    common = ["gan", "distill", "--data", str(paired_dir), "--teacher", str(tmp_path / "latest_net_G.pth"),
              "--teacher-d", str(tmp_path / "latest_net_D.pth"), "--out", str(tmp_path / "s"), "--steps", "1", "--ratio", "0.5",
              "--device", "cpu", "batch_size=2", "load_size=36", "crop_size=32"]
    assert main(common) == 2
    assert "latest_net_G.pth: a plain state dict; give its architecture" in capsys.readouterr().err
    assert main([*common, "--teacher-kind", "resnet", "--teacher-ngf", "8", "--teacher-n-blocks", "1"]) == 0
    _, spec = load_generator(tmp_path / "s" / "G.pt")
    assert (spec.kind, spec.ngf, spec.n_blocks) == ("resnet", 4, 1)  # half of the teacher's 8 filters


def test_eval_scores_a_generator_and_writes_json(tmp_path, generator_file, paired_dir, capsys):
    out = tmp_path / "scores.json"
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(paired_dir), "--out", str(out),
                 "--device", "cpu", "--whole-folder"]) == 0  # paired_dir has no test/ split
    scores = json.loads(out.read_text())["scores"]
    assert scores["images"] == 4 and scores["mode"] == "paired"
    inputs, targets = load_test_split(paired_dir, "paired")
    expected = psnr(generate(load_generator(generator_file)[0], inputs), targets).mean().item()
    assert scores["psnr"] == pytest.approx(expected, rel=1e-5)
    assert {"ssim", "kid", "fid"} <= set(scores) and "fcn_miou" not in scores
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(paired_dir), "--fcn",
                 "--whole-folder"]) == 2
    assert "--fcn needs train/ and test/ splits" in capsys.readouterr().err
    for split in ("train", "test"):
        for side in ("A", "B"):
            shutil.copytree(paired_dir / side, tmp_path / "split" / split / side)
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(tmp_path / "split"), "--fcn"]) == 2
    assert "not a label map in the built-in palette" in capsys.readouterr().err
    for side in ("A", "B"):  # three aligned test images cannot fill two disjoint KID halves of two
        (paired_dir / side / "3.png").unlink()
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(paired_dir), "--whole-folder"]) == 2
    assert f"{paired_dir}: scoring aligned targets needs at least 4 test images, found 3" in capsys.readouterr().err


def test_eval_fcn_scores_label_maps(tmp_path, generator_file):
    rng = np.random.default_rng(0)
    textures = [np.full((40, 40, 3), 40.0 * (c + 1)) for c in range(len(LABEL_CLASSES))]
    for split, count in (("train", 6), ("test", 4)):
        for index in range(count):
            labels = voronoi_labels(rng, 32, len(LABEL_CLASSES))
            write_rgb(tmp_path / "labels" / split / "A" / f"{index}.png", LABEL_PALETTE[labels])
            write_rgb(tmp_path / "labels" / split / "B" / f"{index}.png", render_labels(labels, textures, rng))
    out = tmp_path / "scores.json"
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(tmp_path / "labels"), "--fcn",
                 "--segmenter-steps", "3", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())["scores"]
    assert scores["images"] == 4
    for name in ("fcn_pixel_acc", "fcn_class_acc", "fcn_miou", "fcn_miou_real"):
        assert 0.0 <= scores[name] <= 1.0
    assert scores["seg_fid"] >= 0.0 and "seg_kid" in scores


def test_eval_on_an_unaligned_unpaired_split_reports_distances_only(tmp_path, generator_file):
    rng = np.random.default_rng(2)
    for index in range(3):
        write_rgb(tmp_path / "cyc" / "testA" / f"horse_{index}.png", rng.integers(0, 128, (32, 32, 3)))
    for index in range(4):
        write_rgb(tmp_path / "cyc" / "testB" / f"zebra_{index}.png", rng.integers(128, 256, (32, 32, 3)))
    out = tmp_path / "scores.json"
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(tmp_path / "cyc"),
                 "--teacher", str(generator_file), "--out", str(out)]) == 0
    scores = json.loads(out.read_text())["scores"]
    assert scores["mode"] == "unpaired" and scores["aligned_targets"] is False and scores["images"] == 3
    assert {"kid", "fid"} <= set(scores) and "psnr" not in scores and "ssim" not in scores
    assert scores["psnr_to_teacher"] == 100.0  # the same generator as teacher: identical outputs, clamped
