"""Bad input to ``slimlab gan ...``: refused with a message naming the file or field, inputs left as they were."""

import numpy as np
import pytest
import torch
from PIL import Image

from slimlab.cli import main
from slimlab.core.errors import SlimlabError
from slimlab.core.images import load_image_tensor, read_image
from slimlab.gan.checkpoint import load_discriminator, save_discriminator
from slimlab.gan.networks import PatchDiscriminator
from tests.gan.conftest import write_rgb

TINY_TRAIN = ["--device", "cpu", "--ngf", "4", "ndf=4", "n_blocks=1", "batch_size=2", "load_size=32", "crop_size=32"]


def write_test_split(root, sizes):
    """test/A + test/B pairs, one per side length in ``sizes`` (B is A inverted)."""
    rng = np.random.default_rng(0)
    for index, side in enumerate(sizes):
        a = rng.integers(0, 256, (side, side, 3))
        write_rgb(root / "test" / "A" / f"{index}.png", a)
        write_rgb(root / "test" / "B" / f"{index}.png", 255 - a)
    return root


def test_outputs_never_replace_or_enter_the_inputs(tmp_path, generator_file, paired_dir, capsys):
    original = generator_file.read_bytes()
    split = write_test_split(tmp_path / "split", [32] * 4)
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(split), "--device", "cpu",
                 "--out", str(generator_file)]) == 2
    assert f"{generator_file}: the output would contain the input" in capsys.readouterr().err
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(split), "--device", "cpu",
                 "--out", str(split / "scores.json")]) == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert main(["gan", "export-onnx", "--checkpoint", str(generator_file), "--size", "16", str(generator_file)]) == 2
    assert f"{generator_file}: the output would contain the input" in capsys.readouterr().err
    assert generator_file.read_bytes() == original
    run = paired_dir / "A" / "run"
    assert main(["gan", "train-teacher", "--data", str(paired_dir), "--out", str(run), "--steps", "1",
                 *TINY_TRAIN]) == 2
    assert f"{run}: lies inside the input folder {paired_dir}" in capsys.readouterr().err
    save_discriminator(generator_file.parent / "D.pt", PatchDiscriminator(6, 4))  # the teacher D distill reads
    assert main(["gan", "distill", "--data", str(paired_dir), "--teacher", str(generator_file), "--out", str(run),
                 "--steps", "1", "--device", "cpu", "batch_size=2", "load_size=32", "crop_size=32"]) == 2
    assert f"{run}: lies inside the input folder {paired_dir}" in capsys.readouterr().err
    assert not run.exists() and not (split / "scores.json").exists()


@pytest.mark.parametrize("sizes, message", [
    ([32, 32, 40, 32], "2.png: 40x40 pixels, but 0.png is 32x32; the test images are scored as one batch"),
    ([4] * 4, "0.png: 4x4 pixels (as every test input); the resnet generator"),  # 4 -> 2 -> 1: InstanceNorm fails
    ([30] * 4, "0.png: 30x30 pixels (as every test input); the resnet generator"),  # 30 px comes back as 32
])
def test_eval_names_the_test_image_of_a_size_it_cannot_score(tmp_path, generator_file, sizes, message, capsys):
    root = write_test_split(tmp_path / "data", sizes)
    assert main(["gan", "eval", "--checkpoint", str(generator_file), "--data", str(root), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    if sizes[0] != 32:
        assert "needs sides that are multiples of 4 and at least 8" in error


def test_eval_without_a_test_split_needs_whole_folder(tmp_path, generator_file, paired_dir, capsys):
    command = ["gan", "eval", "--checkpoint", str(generator_file), "--data", str(paired_dir), "--device", "cpu"]
    assert main(command) == 2
    assert f"{paired_dir}: no test/ split (test/A + test/B)" in capsys.readouterr().err
    assert main([*command, "--whole-folder"]) == 0
    assert "images               4" in capsys.readouterr().out  # the four pairs of the folder itself
    assert main([*command, "--whole-folder", "--mode", "unpaired"]) == 2
    assert "--whole-folder applies to paired data" in capsys.readouterr().err


def test_export_onnx_names_a_bad_opset_and_an_unwritable_output(tmp_path, generator_file, capsys):
    for opset in ("1", "99"):  # no torch exports opset 1 (ONNX's own first) or 99 (far beyond ONNX today)
        assert main(["gan", "export-onnx", "--checkpoint", str(generator_file), "--size", "16", "--opset", opset,
                     str(tmp_path / "g.onnx")]) == 2
        assert f"--opset {opset}: this torch's ONNX exporter supports opsets" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("not a folder")
    output = tmp_path / "a_file" / "g.onnx"  # its folder is a file: nothing can be written there
    assert main(["gan", "export-onnx", "--checkpoint", str(generator_file), "--size", "16", str(output)]) == 2
    assert f"{output}: cannot write here" in capsys.readouterr().err
    assert not (tmp_path / "g.onnx").exists()


def test_sixteen_bit_grey_keeps_the_top_eight_bits_it_uses(tmp_path, generator_file):
    values = np.array([[0, 16, 2048, 4095]], np.uint16)  # 12 bits used: shift by 4 -> 0, 1, 128, 255
    Image.fromarray(values).save(tmp_path / "twelve.png")
    assert Image.open(tmp_path / "twelve.png").mode.startswith("I")  # really stored with more than 8 bits
    expected = torch.tensor([0, 1, 128, 255]).float() / 127.5 - 1
    assert torch.allclose(load_image_tensor(tmp_path / "twelve.png"), expected.expand(3, 1, 4))
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 65536, (16, 16)).astype(np.uint16)
    wide[0, 0] = 65535  # all 16 bits used: shift by 8
    (tmp_path / "in16").mkdir()
    Image.fromarray(wide).save(tmp_path / "in16" / "x.png")
    write_rgb(tmp_path / "in8" / "x.png", np.repeat((wide >> 8)[..., None], 3, axis=2))
    for folder in ("in16", "in8"):
        assert main(["gan", "translate", "--checkpoint", str(generator_file), "--device", "cpu",
                     str(tmp_path / folder), str(tmp_path / f"out_{folder}")]) == 0
    assert np.array_equal(read_image(tmp_path / "out_in16" / "x.png"), read_image(tmp_path / "out_in8" / "x.png"))


def test_a_finished_run_is_not_relabelled_with_fewer_steps(tmp_path, paired_dir, capsys):
    run = tmp_path / "run"
    assert main(["gan", "train-teacher", "--data", str(paired_dir), "--out", str(run), "--steps", "2",
                 *TINY_TRAIN]) == 0
    before = {name: (run / name).read_bytes() for name in ("G.pt", "state.pt", "config.yaml")}
    assert main(["gan", "train-teacher", "--data", str(paired_dir), "--out", str(run), "--steps", "1",
                 *TINY_TRAIN]) == 2
    assert f"{run / 'state.pt'}: this run was already trained for 2 steps, more than steps=1" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in before} == before


def test_generator_file_with_a_bad_spec_is_named(tmp_path, generator_file, capsys):
    write_rgb(tmp_path / "in" / "x.png", np.zeros((16, 16, 3)))
    payload = torch.load(generator_file, weights_only=True)
    for name, spec, problem in (("bogus", {**payload["spec"], "bogus": 1}, "unknown field(s) ['bogus']"),
                                ("kind", {**payload["spec"], "kind": "vit"}, "unknown generator kind 'vit'"),
                                ("list", [1, 2], "the generator spec is a list, not a dict")):
        torch.save({**payload, "spec": spec}, tmp_path / f"{name}.pt")
        assert main(["gan", "translate", "--checkpoint", str(tmp_path / f"{name}.pt"), str(tmp_path / "in"),
                     str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert f"{tmp_path / name}.pt: " in error and problem in error
    assert not (tmp_path / "out").exists()


def test_unpaired_folder_in_paired_mode_hints_at_the_mode(tmp_path, unpaired_dir, capsys):
    assert main(["gan", "train-teacher", "--data", str(unpaired_dir), "--out", str(tmp_path / "run"), "--steps", "1",
                 *TINY_TRAIN]) == 2
    error = capsys.readouterr().err
    assert "no image files" in error and "has trainA/, the unpaired layout: pass --mode unpaired" in error
    assert not (tmp_path / "run").exists()


def test_a_discriminator_spec_with_unknown_fields_names_the_file(tmp_path):
    torch.save({"kind": "discriminator", "spec": {"ndf": 4, "bogus": 1}, "state_dict": {}}, tmp_path / "D.pt")
    with pytest.raises(SlimlabError, match=r"D\.pt: discriminator spec .*bogus.* does not fit PatchDiscriminator"):
        load_discriminator(tmp_path / "D.pt")
