"""HF Trainer folders in and out, parameter-name inference, and the CLI."""

import hashlib
import json
import math

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Trainer

from slimlab.cli import main
from slimlab.ckpt import read_checkpoint
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.names import PARAM_NAMES_FILE


def tiny_neox():
    config = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=32, tie_word_embeddings=False)
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(config)


def write_hf_checkpoint(folder, model, steps=3, seed=0):
    """A folder laid out as the HF Trainer writes it (two param groups: decay / no decay)."""
    decay = set(Trainer.get_decay_parameter_names(None, model))
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.1},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, 64, (2, 16), generator=generator)
        loss = model(input_ids=tokens, labels=tokens).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder.mkdir(parents=True)
    model.config.save_pretrained(folder)
    save_file({n: t.contiguous() for n, t in model.state_dict().items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": steps}))
    (folder / "scheduler.pt").write_bytes(b"opaque scheduler bytes")
    return optimizer


def folder_hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_parameter_names_inferred_from_config_and_trainer_grouping(tmp_path):
    model = tiny_neox()
    write_hf_checkpoint(tmp_path / "checkpoint-3", model)
    state = read_checkpoint(tmp_path / "checkpoint-3")
    decay = set(Trainer.get_decay_parameter_names(None, model))
    expected = [n for n, _ in model.named_parameters() if n in decay] + [n for n, _ in model.named_parameters() if n not in decay]
    assert state.optimizer.param_names == expected
    assert state.step == 3 and state.files["scheduler.pt"] == b"opaque scheduler bytes"


def test_cli_chain_decompress_and_transformers_loads(tmp_path, capsys):
    model = tiny_neox()
    runs = tmp_path / "run"
    for step in (3, 6, 9):
        write_hf_checkpoint(runs / f"checkpoint-{step}", model, steps=3, seed=step)
    before = {step: folder_hashes(runs / f"checkpoint-{step}") for step in (3, 6, 9)}
    assert main(["ckpt", "chain", str(runs), "--out", str(tmp_path / "chain"), "--mode", "lossless"]) == 0
    assert before == {step: folder_hashes(runs / f"checkpoint-{step}") for step in (3, 6, 9)}  # inputs untouched
    assert main(["ckpt", "info", str(tmp_path / "chain")]) == 0
    assert "bits/param" in capsys.readouterr().out
    out = tmp_path / "restored"
    assert main(["ckpt", "decompress", str(tmp_path / "chain"), "--step", "6", "--out", str(out)]) == 0
    original = folder_hashes(runs / "checkpoint-6")
    restored = folder_hashes(out)
    for name in ("config.json", "trainer_state.json", "scheduler.pt"):
        assert restored[name] == original[name]
    loaded = GPTNeoXForCausalLM.from_pretrained(out)
    reference = read_checkpoint(runs / "checkpoint-6")
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference.model[name]), name
    optimizer_state = torch.load(out / "optimizer.pt", weights_only=True)
    assert json.loads((out / PARAM_NAMES_FILE).read_text()) == reference.optimizer.param_names
    assert optimizer_state["param_groups"][1]["weight_decay"] == 0.0


def test_cli_compress_single_files_against_a_reference(tmp_path):
    model = tiny_neox()
    write_hf_checkpoint(tmp_path / "a", model, seed=1)
    write_hf_checkpoint(tmp_path / "b", model, seed=2)
    chain = tmp_path / "chain"
    assert main(["ckpt", "compress", str(tmp_path / "a"), "--out", str(chain / "a.excp")]) == 0
    assert main(["ckpt", "compress", str(tmp_path / "b"), "--ref", str(chain / "a.excp"), "--out", str(chain / "b.excp")]) == 0
    assert main(["ckpt", "decompress", str(chain / "b.excp"), "--out", str(tmp_path / "b.pt"), "--format", "torch"]) == 0
    restored = torch.load(tmp_path / "b.pt", weights_only=True)
    original = read_checkpoint(tmp_path / "b")
    assert set(restored["model"]) == set(original.model)
    assert max((restored["model"][n] - t).abs().max().item() for n, t in original.model.items()) < 0.05
    # --score adam against a parent read from disk (the threshold pass decodes the reference tensor by tensor)
    assert main(["ckpt", "compress", str(tmp_path / "b"), "--ref", str(chain / "a.excp"), "--out",
                 str(chain / "b-adam.excp"), "--score", "adam", "--keep-fraction", "0.3"]) == 0
    header = ContainerReader(chain / "b-adam.excp").header
    assert header["codec"]["score"] == "adam" and header["codec"]["keep_fraction"] == 0.3
    coded = [entry for entry in header["tensors"].values() if entry["coding"] == "excp"]
    assert 0.3 <= sum(e["kept"] for e in coded) / sum(math.prod(e["shape"]) for e in coded) <= 0.32
    assert main(["ckpt", "compress", str(tmp_path / "b"), "--ref", str(chain / "a.excp"), "--out",
                 str(chain / "b-curvature.excp"), "--score", "curvature", "--keep-fraction", "0.3", "--beta", "3"]) == 0
    header = ContainerReader(chain / "b-curvature.excp").header
    assert header["codec"]["score"] == "curvature" and header["codec"]["beta"] == 3.0
    coded = [entry for entry in header["tensors"].values() if entry["coding"] == "excp"]
    assert 0.3 <= sum(e["kept"] for e in coded) / sum(math.prod(e["shape"]) for e in coded) <= 0.32
    assert main(["ckpt", "decompress", str(chain / "b-curvature.excp"), "--out", str(tmp_path / "b-curvature.pt"),
                 "--format", "torch"]) == 0


@pytest.mark.parametrize("arguments, message", [
    (["ckpt", "compress", "/nonexistent/checkpoint", "--out", "x.excp"], "no such checkpoint"),
    (["ckpt", "decompress", "/nonexistent.excp", "--out", "y"], "cannot open"),
    (["ckpt", "frobnicate"], "unknown command"),
])
def test_cli_errors_are_one_line_messages(arguments, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
