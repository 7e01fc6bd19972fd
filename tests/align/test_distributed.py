"""Two gloo processes on CPU take exactly the optimizer steps one process takes on the same pairs."""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from slimlab.align.data import write_jsonl

PAIRS = [{"prompt": "HAMLET. The king", "chosen": " loves sweet music.", "rejected": " curses the night.", "p_hat": 0.9},
         {"prompt": "LEAR. My lord", "chosen": " forgives thy heart.", "rejected": " mocks a sword.", "votes": 4, "n_votes": 5},
         {"prompt": "VIOLA. Good sir", "chosen": " praises her grace!", "rejected": " fears the sea."},
         {"prompt": "PORTIA. Fair lady", "chosen": " serves the gods.", "rejected": " betrays the crown.", "p_hat": 0.6},
         {"prompt": "OTHELLO. A fool", "chosen": " awaits the morning.", "rejected": " fears a letter?", "p_hat": 0.3}]


def run_cli(arguments, processes, tmp_path):
    environment = {**os.environ, "SLIMLAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, "-m", "slimlab.cli", *arguments]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "slimlab.cli", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.distributed
def test_two_process_training_matches_one_process(tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    common = ["align", "train", "--model", str(tiny_model_dir), "--pairs", str(tmp_path / "pairs.jsonl"),
              "batch_size=4", "epochs=2", "lr=1e-2", "max_length=40", "device=cpu"]
    run_cli(common + ["--out", str(tmp_path / "one")], 1, tmp_path)
    run_cli(common + ["--out", str(tmp_path / "two")], 2, tmp_path)
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "model.safetensors")
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert one.keys() == two.keys()
    moved = max((one[name] - initial[name]).abs().max().item() for name in one)
    gap = max((one[name] - two[name]).abs().max().item() for name in one)
    assert moved > 1e-3  # the steps did something...
    # ...and both runs did the same thing, up to float rounding of the summed gradients (which Adam's
    # per-coordinate normalisation can amplify on near-zero gradients): 1% of the distance moved.
    assert gap < max(1e-4, 1e-2 * moved)


@pytest.mark.distributed
def test_two_process_iterate_shards_generation_and_agrees_on_pairs(tiny_model_dir, prompt_file, tmp_path):
    run_cli(["align", "iterate", "--model", str(tiny_model_dir), "--prompts", str(prompt_file), "--out", str(tmp_path / "run"),
             "rounds=1", "prompts_per_round=6", "max_new_tokens=8", "max_length=40", "batch_size=4", "device=cpu"], 2, tmp_path)
    samples = [json.loads(line) for line in (tmp_path / "run/rounds/round_0/samples.jsonl").read_text().splitlines()]
    expected = [json.loads(line)["prompt"] for line in prompt_file.read_text().splitlines()[:6]]
    assert [row["prompt"] for row in samples] == expected  # both ranks' shares gathered back in prompt order
    assert all(len(row["responses"]) == 4 for row in samples)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
