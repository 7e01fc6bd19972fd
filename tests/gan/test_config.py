"""Config ranges: each bad value is refused by name when the config is built, before any data or output."""

import dataclasses

import pytest
import torch

from slimlab.cli import main
from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError
from slimlab.gan.config import DistillConfig, TeacherConfig
from slimlab.gan.networks import PatchDiscriminator

BAD_TRAINING_VALUES = [
    ({"log_every": 0}, "'log_every' is 0; it must be >= 1"),            # step % 0 in the loop
    ({"checkpoint_every": 0}, "'checkpoint_every' is 0; it must be >= 1"),
    ({"batch_size": 0}, "'batch_size' is 0; it must be >= 1"),
    ({"steps": -1}, "'steps' is -1; it must be >= 0"),
    ({"lr": 0.0}, "'lr' is 0.0; it must be > 0"),
    ({"lr": -1e-4}, "'lr' is -0.0001; it must be > 0"),
    ({"beta1": 1.0}, "'beta1' is 1.0; it must be in \\[0, 1\\)"),
    ({"load_size": 60}, "'load_size' is 60; it must be >= crop_size \\(64\\)"),
    ({"crop_size": 16, "load_size": 16}, "'crop_size' is 16; it must be >= 24"),
    ({"lambda_cycle": -1.0}, "'lambda_cycle' is -1.0; it must be >= 0"),
]


@pytest.mark.parametrize("change, message", BAD_TRAINING_VALUES)
@pytest.mark.parametrize("config_class", [TeacherConfig, DistillConfig])
def test_bad_training_values_are_named(config_class, change, message):
    required = {"data": "unused"} | ({"teacher": "G.pt"} if config_class is DistillConfig else {})
    with pytest.raises(SlimlabError, match=f"{config_class.__name__}: {message}"):
        load_config(config_class, **required, **change)


@pytest.mark.parametrize("change, message", [
    ({"crop_size": 66, "load_size": 72}, "'crop_size' is 66; it must be a multiple of 4 for the resnet generator"),
    ({"generator": "unet", "num_downs": 6, "crop_size": 96, "load_size": 100}, "must be a multiple of 64 for the unet"),
    ({"generator": "unet", "num_downs": 4, "crop_size": 32}, "'num_downs' is 4; it must be >= 5"),
    ({"ngf": 0}, "'ngf' is 0; it must be >= 1"),
])
def test_teacher_architecture_values_are_named(change, message):
    with pytest.raises(SlimlabError, match=message):
        load_config(TeacherConfig, data="unused", **change)


def test_distill_ratio_and_smallest_accepted_sizes():
    with pytest.raises(SlimlabError, match="'ratio' is 1.5; it must be in \\(0, 1\\]"):
        load_config(DistillConfig, data="unused", teacher="G.pt", ratio=1.5)
    # 0 steps is allowed: it writes the networks as initialised (e.g. from slice_from) without training
    assert load_config(TeacherConfig, data="unused", steps=0, crop_size=24, load_size=24).crop_size == 24
    # 24 is the smallest crop the PatchGAN takes in training: 24 -> 12 -> 6 -> 3, then the stride-1 conv gives
    # 2x2 (InstanceNorm needs more than one value) and the last conv 1x1; 16 would leave 1x1 before the norm
    assert PatchDiscriminator.min_size() == 24
    discriminator = PatchDiscriminator(6, 4).train()
    assert discriminator(torch.rand(2, 6, 24, 24)).shape == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        discriminator(torch.rand(2, 6, 16, 16))


def test_cli_reports_a_bad_value_after_an_option_cleanly(tmp_path, capsys):
    # key=value overrides before and after an option: all are read, and the bad one is named
    assert main(["gan", "train-teacher", "--data", str(tmp_path / "unused"), "ngf=4", "--out", str(tmp_path / "v"),
                 "log_every=0"]) == 2
    error = capsys.readouterr().err
    assert "slimlab: error: TeacherConfig: 'log_every' is 0; it must be >= 1" in error
    assert not (tmp_path / "v").exists()
    assert main(["gan", "distill", "ratio=2", "--data", str(tmp_path), "--teacher", str(tmp_path / "G.pt")]) == 2
    assert "DistillConfig: 'ratio' is 2.0" in capsys.readouterr().err


@pytest.mark.parametrize("command, config_fields", [
    ("train-teacher", ["lambda_l1              100.0", "generator              'resnet'  (resnet | unet)"]),
    ("distill", ["triplet_margin         1.0", "teacher                (required)"]),
])
def test_help_lists_every_config_field_with_its_default(command, config_fields, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gan", command, "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    config_class = TeacherConfig if command == "train-teacher" else DistillConfig
    assert all(f"\n  {field.name} " in printed for field in dataclasses.fields(config_class))
    assert all(line in printed for line in config_fields)
