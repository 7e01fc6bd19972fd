"""Training recipe, resume, CLI commands and 2-process data-parallel training, all on a tiny synthetic set."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import cv2
import pytest
import torch

from slimlab.cli import main as cli_main
from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError
from slimlab.par.checkpoint import load_checkpoint
from slimlab.par.config import ParTrainConfig
from slimlab.par.recipes.train import main as train
from slimlab.par.synthetic import ATTRIBUTE_NAMES, make_synthetic_pedestrians

TINY = ["train_count=48", "test_count=16", "width=4", "branch_dim=8", "batch_size=16", "device=cpu"]


def tiny_config(out_dir, *extra):
    return load_config(ParTrainConfig, None, TINY + [f"out_dir={out_dir}", *extra])


def test_training_writes_checkpoint_metrics_and_lowers_the_loss(tmp_path):
    result = train(tiny_config(tmp_path, "epochs=4", "learning_rate=0.01"))
    assert set(result) >= {"mA", "accuracy", "precision", "recall", "f1", "weak_mA", "ece"}
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 4


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    train(tiny_config(tmp_path / "straight", "epochs=2"))
    train(tiny_config(tmp_path / "resumed", "epochs=2", "stop_after_epochs=1"))
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    train(tiny_config(tmp_path / "resumed", "epochs=2", "resume=true"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    rows = lambda run: [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    loss = lambda run: [row["loss"] for row in rows(run) if "loss" in row]  # noqa: E731
    assert loss("straight")[1] == pytest.approx(loss("resumed")[1], rel=1e-6)


def test_resume_refuses_other_settings_and_keeps_the_finished_config(tmp_path):
    train(tiny_config(tmp_path, "epochs=1", "head=global"))
    finished = (tmp_path / "config.yaml").read_text()
    # another head would fail in load_state_dict, another variant or learning rate would continue silently
    with pytest.raises(SlimlabError, match="checkpoint.pt: was written by a run with different settings "
                       r"\(head: 'global' there, 'branches' now; learning_rate: 0.001 there, 0.01 now; "
                       r"variant: 'correlated' there, 'independent' now\)"):
        train(tiny_config(tmp_path, "epochs=2", "resume=true", "head=branches", "variant=independent",
                          "learning_rate=0.01"))
    assert (tmp_path / "config.yaml").read_text() == finished


def write_dataset_pkl(folder, test_rows):
    """Three 64x32 images, 1.png..3.png; rows 0, 1 train and ``test_rows`` test."""
    import pickle

    import numpy as np

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(make_synthetic_pedestrians(3, 1, seed=3).train_images, 1):
        cv2.imwrite(str(folder / "images" / f"{index}.png"), image[:, :, ::-1])
    dataset = {"image_name": ["1.png", "2.png", "3.png"], "attr_name": ["Female", "Hat"],
               "label": np.array([[1, 0], [0, 1], [1, 1]]), "root": str(folder / "images"),
               "partition": {"trainval": [np.array([0, 1])], "test": [np.array(test_rows, dtype=np.int64)]}}
    (folder / "dataset.pkl").write_bytes(pickle.dumps(dataset))
    return folder / "dataset.pkl"


def test_empty_split_or_missing_image_stops_before_training(tmp_path):
    def config(pkl):
        return load_config(ParTrainConfig, None, ["dataset=pkl", f"data_root={pkl}", "width=4", "branch_dim=8", "epochs=1",
                                                  "batch_size=2", "device=cpu", f"out_dir={tmp_path / 'run'}"])

    pkl = write_dataset_pkl(tmp_path, test_rows=[])
    with pytest.raises(SlimlabError, match="dataset.pkl: the test split is empty"):
        train(config(pkl))
    pkl = write_dataset_pkl(tmp_path, test_rows=[2])
    (tmp_path / "images" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n then no header")  # PNG signature, broken file
    with pytest.raises(SlimlabError, match=r"images/3.png: not a readable image \(in the test split\)"):
        train(config(pkl))
    (tmp_path / "images" / "3.png").unlink()
    with pytest.raises(SlimlabError, match="images/3.png: image of the test split not found"):
        train(config(pkl))
    assert not (tmp_path / "run").exists()  # refused before the run folder, so no epoch was trained


def test_a_failed_run_leaves_the_run_folder_as_it_was(tmp_path):
    pkl = write_dataset_pkl(tmp_path, test_rows=[2])
    settings = ["dataset=pkl", f"data_root={pkl}", "width=4", "branch_dim=8", "epochs=2", "batch_size=2", "device=cpu",
                f"out_dir={tmp_path / 'run'}"]
    image = tmp_path / "images" / "1.png"  # a training image
    good = image.read_bytes()
    image.write_bytes(good[:len(good) // 2])  # its header reads, its pixels do not: found only in the first epoch
    with pytest.raises(SlimlabError, match="1.png: not a readable image"):
        train(load_config(ParTrainConfig, None, settings))
    assert not (tmp_path / "run").exists()  # the folder this run created is gone
    image.write_bytes(good)
    train(load_config(ParTrainConfig, None, settings + ["stop_after_epochs=1"]))
    before = {name: (tmp_path / "run" / name).read_bytes()
              for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt")}
    image.write_bytes(good[:len(good) // 2])
    with pytest.raises(SlimlabError, match="1.png: not a readable image"):
        train(load_config(ParTrainConfig, None, settings + ["resume=true"]))
    # the resumed run had rewritten the config (resume=true), appended nothing yet and kept the epoch-1 checkpoint;
    # every file is back as the first run left it and nothing new is there
    assert {path.name for path in (tmp_path / "run").iterdir()} == set(before)
    assert all((tmp_path / "run" / name).read_bytes() == content for name, content in before.items())


def test_cli_train_eval_predict(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["par", "train", "--head", "global", "--epochs", "1", *TINY, f"out_dir={out}"]) == 0
    assert cli_main(["par", "eval", str(out / "checkpoint.pt"), "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["attribute_names"] == list(ATTRIBUTE_NAMES)
    image = make_synthetic_pedestrians(1, 1, seed=9).test_images[0]
    cv2.imwrite(str(tmp_path / "person.png"), image[:, :, ::-1])
    capsys.readouterr()
    assert cli_main(["par", "predict", str(tmp_path / "person.png"), "--checkpoint", str(out / "checkpoint.pt"),
                     "--all", "--json", str(tmp_path / "p.json")]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in ATTRIBUTE_NAMES)
    probabilities = json.loads((tmp_path / "p.json").read_text())[str(tmp_path / "person.png")]
    assert set(probabilities) == set(ATTRIBUTE_NAMES) and all(0 <= p <= 1 for p in probabilities.values())


def test_cli_reports_bad_inputs_by_name(tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    train(tiny_config(tmp_path / "run", "epochs=1", "head=branches"))
    assert cli_main(["par", "predict", str(tmp_path / "broken.jpg"), "--checkpoint",
                     str(tmp_path / "run" / "checkpoint.pt")]) == 2
    assert "broken.jpg: not a readable image" in capsys.readouterr().err
    assert cli_main(["par", "train", "--head", "resnet"]) == 2
    assert "'head' must be one of" in capsys.readouterr().err
    assert cli_main(["par", "train", "--dataset", "peta", "--data-root", str(tmp_path / "missing.mat")]) == 2
    assert "missing.mat: annotation file or folder not found" in capsys.readouterr().err
    assert cli_main(["par", "eval", str(tmp_path / "broken.jpg")]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """One tiny trained checkpoint shared by the tests below that only read it."""
    folder = tmp_path_factory.mktemp("par_checkpoint")
    train(tiny_config(folder, "epochs=1", "head=global"))
    return folder / "checkpoint.pt"


def test_outputs_never_replace_inputs(checkpoint, tmp_path, capsys):
    image = tmp_path / "person.png"
    cv2.imwrite(str(image), make_synthetic_pedestrians(1, 1, seed=9).test_images[0])
    weights, pixels = checkpoint.read_bytes(), image.read_bytes()
    for command in (["par", "eval", str(checkpoint), "--device", "cpu", "--out", str(checkpoint)],
                    ["par", "predict", "--checkpoint", str(checkpoint), str(image), "--json", str(image)],
                    ["par", "predict", "--checkpoint", str(checkpoint), str(image), "--json", str(checkpoint)]):
        assert cli_main(command) == 2
        assert "the output would contain the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == weights and image.read_bytes() == pixels
    pkl = write_dataset_pkl(tmp_path, test_rows=[2])
    with pytest.raises(SlimlabError, match="images/run: lies inside the input folder"):  # the run in the image folder
        train(tiny_config(tmp_path / "images" / "run", "dataset=pkl", f"data_root={pkl}",
                          f"images_root={tmp_path / 'images'}"))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SlimlabError, match="taken: out_dir exists and is a file, not a folder"):
        train(tiny_config(tmp_path / "taken"))


def test_damaged_checkpoint_contents_are_named(checkpoint, tmp_path, capsys):
    from slimlab.par.checkpoint import load_trained_model

    stored = torch.load(checkpoint, weights_only=True)
    first = next(iter(stored["model"]))
    damages = {"no_branch_map": ({k: v for k, v in stored.items() if k != "attribute_to_branch"},
                                 "damaged PAR checkpoint, missing 'attribute_to_branch'"),
               "no_tensor": ({**stored, "model": {k: v for k, v in stored["model"].items() if k != first}},
                             f"do not fit the model its config describes \\(missing 1 tensor\\(s\\), e.g. {first}\\)"),
               "wider": ({**stored, "config": {**stored["config"], "width": 8}},
                         f"wrong shape in .* e.g. {first} \\(4, 3, 3, 3\\) \\(the model has \\(8, 3, 3, 3\\)\\)"),
               "bad_head": ({**stored, "config": {**stored["config"], "head": "bogus"}},
                            "its stored config is invalid \\(config 'head' must be one of")}
    for name, (state, message) in damages.items():
        torch.save(state, tmp_path / f"{name}.pt")
        with pytest.raises(SlimlabError, match=f"{name}.pt: .*{message}"):
            load_trained_model(tmp_path / f"{name}.pt")
    assert cli_main(["par", "eval", str(tmp_path / "no_tensor.pt"), "--device", "cpu"]) == 2  # no traceback
    assert "no_tensor.pt: the weights do not fit" in capsys.readouterr().err


def test_eval_takes_dataset_fields_anywhere_and_refuses_model_fields(checkpoint, tmp_path, capsys):
    assert cli_main(["par", "eval", str(checkpoint), "head=branches", "width=64", "--device", "cpu"]) == 2
    assert "'head' cannot be changed by par eval" in capsys.readouterr().err
    # a dataset override after an option is read: this one names a 2-attribute dataset, so eval refuses it
    pkl = write_dataset_pkl(tmp_path, test_rows=[2])
    assert cli_main(["par", "eval", str(checkpoint), "--device", "cpu", "dataset=pkl", f"data_root={pkl}"]) == 2
    assert f"trained on {len(ATTRIBUTE_NAMES)} attributes" in capsys.readouterr().err


@pytest.mark.distributed
def test_two_process_data_parallel_training(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SLIMLAB_QUIET": "1"}
    with socket.socket() as probe:  # a free port, so parallel test runs of other families cannot collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "slimlab.cli", "par", "train", *TINY, "epochs=1", f"out_dir={tmp_path}"]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["replicas_in_sync"] is True
    assert 0 <= result["mA"] <= 1


def test_training_on_a_pa100k_layout_with_image_files(tmp_path):
    from .test_annotations import write_pa100k

    images = make_synthetic_pedestrians(5, 1, seed=4).train_images
    root = tmp_path / "pa100k"
    (root / "data").mkdir(parents=True)
    for index, image in enumerate(images, 1):
        cv2.imwrite(str(root / "data" / f"{index:06d}.jpg"), cv2.resize(image[:, :, ::-1], (48, 96)))
    write_pa100k(root)
    cfg = load_config(ParTrainConfig, None, ["dataset=pa100k", f"data_root={root}", "width=4", "branch_dim=8",
                                             "epochs=1", "batch_size=2", "device=cpu", f"out_dir={tmp_path / 'run'}"])
    result = train(cfg)
    assert result["attribute_names"] == ["Female", "Hat", "Backpack"]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["attribute_to_branch"] == [3, 0, 1]  # by name
    (root / "data" / "000004.jpg").write_bytes(b"truncated")
    with pytest.raises(SlimlabError, match="000004.jpg: not a readable image"):
        train(dataclasses.replace(cfg, out_dir=str(tmp_path / "run2")))


def test_checkpoint_from_before_the_mixing_option_loads_as_linear_and_resumes_only_as_such(tmp_path):
    from slimlab.par.checkpoint import load_trained_model

    train(tiny_config(tmp_path, "epochs=1", "combine=linear"))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for added in ("combine", "receptive_field"):  # what a checkpoint written before these options holds
        del state["config"][added]
    torch.save(state, tmp_path / "checkpoint.pt")
    model, cfg, _ = load_trained_model(tmp_path / "checkpoint.pt")
    assert (cfg.combine, cfg.receptive_field, model.pooling.combine) == ("linear", "wide", "linear")
    with pytest.raises(SlimlabError, match="combine: 'linear' there, 'log_odds' now"):
        train(tiny_config(tmp_path, "epochs=2", "resume=true"))
    train(tiny_config(tmp_path, "epochs=2", "resume=true", "combine=linear"))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_a_used_run_folder_needs_resume_and_resume_drops_rows_past_the_checkpoint(tmp_path):
    train(tiny_config(tmp_path, "epochs=2", "stop_after_epochs=1"))
    with pytest.raises(SlimlabError, match="already holds a run .*pass resume=true"):
        train(tiny_config(tmp_path, "epochs=2"))
    with open(tmp_path / "metrics.jsonl", "a") as stream:  # an epoch logged, then interrupted before its checkpoint
        stream.write(json.dumps({"epoch": 2, "loss": 99.0}) + "\n")
    train(tiny_config(tmp_path, "epochs=2", "resume=true"))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows if "loss" in row] == [1, 2] and 99.0 not in [row.get("loss") for row in rows]


def test_runs_stay_out_of_the_image_folder_and_a_failed_run_removes_the_folders_it_made(tmp_path):
    pkl = write_dataset_pkl(tmp_path, test_rows=[2])
    settings = ["dataset=pkl", f"data_root={pkl}", "width=4", "branch_dim=8", "epochs=1", "batch_size=2",
                "device=cpu"]
    with pytest.raises(SlimlabError, match="lies inside the input folder"):
        train(load_config(ParTrainConfig, None, settings + [f"out_dir={tmp_path / 'images' / 'run'}"]))
    image = tmp_path / "images" / "1.png"
    image.write_bytes(image.read_bytes()[:200])  # header readable, pixels not: fails inside the first epoch
    with pytest.raises(SlimlabError, match="1.png: not a readable image"):
        train(load_config(ParTrainConfig, None, settings + [f"out_dir={tmp_path / 'nest' / 'a' / 'run'}"]))
    assert not (tmp_path / "nest").exists()
