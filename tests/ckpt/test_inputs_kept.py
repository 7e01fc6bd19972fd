"""Nothing a user gives is lost or overwritten: inputs, empty tensors, extra entries of a torch file."""

import hashlib

import pytest
import torch

from slimlab.ckpt import compress_checkpoint, decompress_checkpoint, read_checkpoint
from slimlab.cli import main
from slimlab.core.errors import SlimlabError


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("mode", ["excp", "excp-ref", "lossless"])
def test_zero_element_tensor_round_trips(tmp_path, mode):
    torch.manual_seed(0)
    source = tmp_path / "empty.pt"
    torch.save({"model": {"w": torch.randn(4, 4), "empty": torch.zeros(0, 3)}}, source)
    assert main(["ckpt", "compress", str(source), "--out", str(tmp_path / "e.excp"), "--mode", mode]) == 0
    assert main(["ckpt", "decompress", str(tmp_path / "e.excp"), "--out", str(tmp_path / "o.pt")]) == 0
    restored = torch.load(tmp_path / "o.pt", weights_only=True)["model"]
    assert restored["empty"].shape == (0, 3) and restored["empty"].dtype == torch.float32


def test_outputs_never_replace_inputs(tmp_path, capsys):
    torch.manual_seed(0)
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"model": {"w": torch.randn(8, 8)}}, first)
    torch.save({"model": {"w": torch.randn(8, 8)}}, second)
    before = {path: digest(path) for path in (first, second)}
    assert main(["ckpt", "compress", str(first), "--out", str(first)]) == 2
    assert "would contain the input" in capsys.readouterr().err
    assert main(["ckpt", "compress", str(first), "--out", str(tmp_path / "a.excp")]) == 0
    reference = digest(tmp_path / "a.excp")
    # the new file would replace its own reference
    assert main(["ckpt", "compress", str(second), "--ref", str(tmp_path / "a.excp"), "--out",
                 str(tmp_path / "a.excp")]) == 2
    assert "would contain the input" in capsys.readouterr().err
    assert digest(tmp_path / "a.excp") == reference
    # an existing output file is not replaced silently, and a file source has no --step
    assert main(["ckpt", "compress", str(first), "--out", str(tmp_path / "a.excp")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["ckpt", "decompress", str(tmp_path / "a.excp"), "--out", str(tmp_path / "a.excp"),
                 "--format", "torch"]) == 2
    assert "would contain the input" in capsys.readouterr().err
    assert main(["ckpt", "decompress", str(tmp_path / "a.excp"), "--out", str(second)]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SlimlabError, match="single .excp file holds one step"):
        decompress_checkpoint(tmp_path / "a.excp", tmp_path / "c.pt", step=999)
    assert {path: digest(path) for path in (first, second)} == before
    assert digest(tmp_path / "a.excp") == reference


def test_extra_entries_of_a_torch_file_are_kept(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    generator_optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    generator_optimizer.step()
    # a GAN-style file: 'optimizer' holds a list (not one optimizer state), 'state_dict' an EMA copy
    ema = {name: tensor * 0.5 for name, tensor in model.state_dict().items()}
    source = tmp_path / "gan.pt"
    torch.save({"epoch": 7, "model": model.state_dict(), "optimizer": [generator_optimizer.state_dict()],
                "state_dict": ema}, source)
    compress_checkpoint(source, tmp_path / "gan.excp", codec=None)
    decompress_checkpoint(tmp_path / "gan.excp", tmp_path / "restored.pt")
    restored = torch.load(tmp_path / "restored.pt", weights_only=True)
    assert restored["epoch"] == 7
    assert torch.equal(restored["optimizer"][0]["state"][0]["exp_avg"],
                       generator_optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(restored["state_dict"]["weight"], ema["weight"])


def test_a_layout_conversion_names_what_it_does_not_carry(tmp_path, capsys):
    torch.manual_seed(0)
    source = tmp_path / "run.pt"
    torch.save({"model": {"w": torch.randn(3)}, "epoch": 2}, source)
    compress_checkpoint(source, tmp_path / "run.excp")
    decompress_checkpoint(tmp_path / "run.excp", tmp_path / "as_hf", layout="hf")
    assert "has no place for the extra entries epoch" in capsys.readouterr().err
    assert (tmp_path / "as_hf" / "model.safetensors").is_file()


def test_unstorable_entries_are_named_with_the_file(tmp_path):
    torch.save({"model": {"w": torch.zeros(2), "_meta": {"note": 1}}}, tmp_path / "meta.pt")
    with pytest.raises(SlimlabError, match=r"meta.pt: entry '_meta' is a dict, not a tensor"):
        read_checkpoint(tmp_path / "meta.pt")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    state["state"][0]["history"] = [torch.ones(3), torch.ones(3)]  # a list of tensors with data
    torch.save({"model": model.state_dict(), "optimizer": state}, tmp_path / "odd.pt")
    with pytest.raises(SlimlabError, match=r"odd.pt: optimizer state 'history' of parameter 0"):
        compress_checkpoint(tmp_path / "odd.pt", tmp_path / "odd.excp")
    assert not (tmp_path / "odd.excp").exists()
