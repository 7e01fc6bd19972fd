"""Bad input to the align commands: a clear SlimlabError (exit 2) naming the problem, and nothing new left behind."""

import json
import math
import shutil

import pytest
import torch

from slimlab.align.annotators import Annotation
from slimlab.align.config import IREPOConfig
from slimlab.align.data import write_jsonl
from slimlab.align.loop import run_iterate
from slimlab.align.policy import load_policy
from slimlab.cli import main as cli_main
from slimlab.core.errors import SlimlabError

PAIRS = [{"prompt": "HAMLET. The king", "chosen": " loves sweet music.", "rejected": " curses the night.", "p_hat": 0.9},
         {"prompt": "LEAR. My lord", "chosen": " forgives thy heart.", "rejected": " mocks a sword.", "votes": 4, "n_votes": 5}]


def train(model, pairs, out, *extra):
    return cli_main(["align", "train", "--model", str(model), "--pairs", str(pairs), "--out", str(out),
                     "--device", "cpu", "epochs=1", "batch_size=2", "max_length=40", *extra])


@pytest.mark.parametrize("name, value, rule", [("weight_decay", -5.0, ">= 0"), ("grad_clip", -1.0, "positive"),
                                               ("grad_clip", 0.0, "positive"), ("vote_prior", -0.5, ">= 0"),
                                               ("lora_rank", -1, ">= 0"), ("beta", math.nan, "a finite number"),
                                               ("lr", math.inf, "a finite number")])
def test_config_values_out_of_range_are_refused(name, value, rule):
    # grad_clip -1 would flip every gradient (ascent) and 0 would scale it to nothing: neither may train silently
    with pytest.raises(ValueError, match=f"'{name}' must be {rule}"):
        IREPOConfig(policy="model", **{name: value})


def test_a_rerun_needs_overwrite_and_a_failed_one_leaves_the_old_run_as_it_was(tiny_model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    write_jsonl(tmp_path / "ties.jsonl", [{**row, "p_hat": 0.5} for row in PAIRS])
    run = tmp_path / "run"
    assert train(tiny_model_dir, tmp_path / "pairs.jsonl", run) == 0
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.jsonl")}

    assert train(tiny_model_dir, tmp_path / "pairs.jsonl", run) == 2
    assert "already holds a run; pass --overwrite" in capsys.readouterr().err
    assert train(tiny_model_dir, tmp_path / "pairs.jsonl", run, "--overwrite", "weight_decay=-5") == 2
    assert "'weight_decay' must be >= 0, got -5.0" in capsys.readouterr().err
    # dpo drops ties (no majority): a file of ties leaves nothing to train on
    assert train(tiny_model_dir, tmp_path / "ties.jsonl", run, "--overwrite", "method=dpo") == 2
    assert "every pair is a tie (p_hat 0.5), which method dpo drops" in capsys.readouterr().err
    assert train(tiny_model_dir, tmp_path / "ties.jsonl", tmp_path / "fresh", "method=dpo") == 2
    assert {name: (run / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.jsonl", "run", "ties.jsonl"]  # no temporaries

    # 2 pairs, batch_size 2, 1 epoch: one optimizer step, logged once; the rerun does not append to the old rows
    assert train(tiny_model_dir, tmp_path / "pairs.jsonl", run, "--overwrite") == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "step" in row] == [1]


def test_iterate_without_usable_pairs_leaves_no_run_folder(tiny_model_dir, prompt_file, tmp_path, tiny_config):
    cfg = tiny_config(tiny_model_dir, prompt_file, tmp_path / "run", method="dpo", rounds=1, prompts_per_round=2)
    with pytest.raises(SlimlabError, match="round 0: no usable pairs"):
        run_iterate(cfg, annotator=lambda prompt, responses: Annotation(torch.full((len(responses),) * 2, 0.5)))
    assert list(tmp_path.iterdir()) == []  # not even config.yaml


def test_model_folders_without_files_or_with_damaged_weights_are_named(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlimlabError, match=r"empty: not a saved transformers model folder: no config.json; "
                                           r"no model weights .*; no tokenizer"):
        load_policy(str(tmp_path / "empty"), torch.device("cpu"))
    shutil.copytree(tiny_model_dir, tmp_path / "cut")
    weights = tmp_path / "cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4])  # not even the 8-byte header length
    with pytest.raises(SlimlabError, match=r"cut: cannot read the weights in model.safetensors: damaged or incomplete"):
        load_policy(str(tmp_path / "cut"), torch.device("cpu"))


@pytest.mark.parametrize("flags, message", [(["--steps", "0"], "--steps must be at least 1, got 0"),
                                            (["--steps", "-5"], "--steps must be at least 1, got -5"),
                                            (["--layers", "0"], "--layers must be at least 1, got 0"),
                                            (["--hidden-size", "10"], "--hidden-size must be a positive multiple of 8"),
                                            (["--hidden-size", "12"], "--hidden-size must be a positive multiple of 8"),
                                            (["--vocab-size", "5"], "--vocab-size must be at least 259")])
def test_pretrain_flags_are_checked_before_training(tmp_path, capsys, flags, message):
    assert cli_main(["align", "pretrain", "--out", str(tmp_path / "lm"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "lm").exists()


def test_pretrain_refuses_an_existing_output_before_training(tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")
    monkeypatch.setattr("slimlab.align.cli.pretrain_causal_lm", no_training)
    (tmp_path / "lm").mkdir()
    assert cli_main(["align", "pretrain", "--out", str(tmp_path / "lm")]) == 2
    assert "lm: already exists" in capsys.readouterr().err


def test_label_without_any_pair_writes_nothing(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, [{"prompt": "hi", "responses": ["same", "same"]}, {"prompt": "yo", "responses": ["x"] * 3}])
    assert cli_main(["align", "label", str(samples), "--out", str(tmp_path / "pairs.jsonl")]) == 2
    assert "samples.jsonl: no pairs to write" in capsys.readouterr().err
    assert not (tmp_path / "pairs.jsonl").exists()


def test_sample_without_prompts_says_so(tiny_model_dir, tmp_path, capsys):
    assert cli_main(["align", "sample", "--model", str(tiny_model_dir), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "sample needs --prompts" in capsys.readouterr().err and not (tmp_path / "s.jsonl").exists()
