"""Import of the official ExCP ``compressed.pt``: index unpacking by hand, rebuild against a reference, errors."""

import json

import pytest
import torch
from transformers import GPTNeoXForCausalLM

from slimlab.ckpt import read_checkpoint
from slimlab.ckpt.official import import_official, unpack_indices
from slimlab.cli import main
from slimlab.core.errors import SlimlabError

from .test_hf_folder_and_cli import folder_hashes, tiny_neox, write_hf_checkpoint


def pack(indices, bits=4):
    """The official packing: 8 // bits indices per byte, the first in the most significant bits."""
    per_byte = 8 // bits
    rows = torch.as_tensor(indices, dtype=torch.int64).reshape(-1, per_byte)
    packed = torch.zeros(rows.shape[0], dtype=torch.int64)
    for position in range(per_byte):
        packed += rows[:, position] * (2 ** bits) ** (per_byte - position - 1)
    return packed.to(torch.uint8)


def test_unpack_four_bit_indices_by_hand():
    codebook = (torch.arange(1, 16, dtype=torch.float32) * 0.5).to(torch.float16).reshape(15, 1)  # faiss: (k, 1)
    # 0x1F = 0001 1111 -> indices 1, 15 -> 0.5, 7.5; 0x20 -> indices 2, 0 -> 1.0, exact zero.
    values = unpack_indices(torch.tensor([0x1F, 0x20], dtype=torch.uint8), codebook, 4, "t")
    assert values.tolist() == [0.5, 7.5, 1.0, 0.0]


def test_unpack_two_bit_indices_by_hand():
    codebook = torch.tensor([-1.0, 0.25, 2.0], dtype=torch.float16)  # 3 entries -> 2 bits, 4 per byte
    # 0xE4 = 11 10 01 00 -> indices 3, 2, 1, 0 -> 2.0, 0.25, -1.0, 0.0
    values = unpack_indices(torch.tensor([0xE4], dtype=torch.uint8), codebook, 4, "t")
    assert values.tolist() == [2.0, 0.25, -1.0, 0.0]


def make_official_file(reference_folder, path):
    """A compressed.pt as compress_pythia.py writes it, for two tensors of the reference, plus expectations."""
    state = read_checkpoint(reference_folder)
    generator = torch.Generator().manual_seed(3)
    entries, expected = {}, {}
    matrix = "gpt_neox.layers.0.attention.dense.weight"     # (32, 32): quantized streams
    count = state.model[matrix].numel()
    streams, values = {}, {}
    for stream in ("weights", "opt_v", "opt_m"):
        low = 1 if stream == "opt_m" else 0                  # v is non-zero wherever the test does not say
        indices = torch.randint(low, 16, (count,), generator=generator)
        codebook = torch.rand(15, 1, generator=generator).to(torch.float16) * 1e-3
        if stream == "opt_m":
            indices[:5] = 0                                  # second moment flushed to zero at 5 positions ...
        if stream == "opt_v":
            indices[:5] = 7                                  # ... where the first moment is not
        streams[f"{stream}_i"] = pack(indices).reshape(32, 16)
        streams[f"{stream}_c"] = codebook
        table = torch.cat([torch.zeros(1), codebook.reshape(-1).float()])
        values[stream] = table[indices].reshape(32, 32)
    entries[matrix] = streams
    expected[matrix] = values
    bias = "gpt_neox.layers.1.mlp.dense_4h_to_h.bias"        # (32,): few non-zeros, stored unquantized
    raw = {stream: torch.zeros(32) for stream in ("weights", "opt_v", "opt_m")}
    raw["weights"][3], raw["opt_v"][3], raw["opt_m"][3] = 0.25, -0.5, 0.125
    entries[bias] = {f"{stream}_i": tensor for stream, tensor in raw.items()}
    expected[bias] = raw
    torch.save(entries, path)
    return state, expected


def test_import_rebuilds_weights_and_swapped_moments_and_keeps_the_rest(tmp_path):
    reference = tmp_path / "checkpoint-3"
    write_hf_checkpoint(reference, tiny_neox())
    before = folder_hashes(reference)
    ref_state, expected = make_official_file(reference, tmp_path / "compressed.pt")
    summary = import_official(tmp_path / "compressed.pt", reference, tmp_path / "out")
    assert (summary.tensors, summary.first_moments_zeroed) == (2, 5)
    assert folder_hashes(reference) == before                       # inputs are never modified
    out = read_checkpoint(tmp_path / "out")
    ids = {name: index for index, name in enumerate(out.optimizer.param_names)}
    for name, values in expected.items():
        assert torch.equal(out.model[name], ref_state.model[name] + values["weights"])
        first = values["opt_v"].clone()
        first[(values["opt_m"] == 0) & (first != 0)] = 0            # Adam would divide by eps there
        assert torch.equal(out.optimizer.state[ids[name]]["exp_avg"], first)           # official opt_v
        assert torch.equal(out.optimizer.state[ids[name]]["exp_avg_sq"], values["opt_m"])  # official opt_m
    for name, tensor in ref_state.model.items():
        if name not in expected:
            assert torch.equal(out.model[name], tensor)
    assert out.optimizer.param_groups == ref_state.optimizer.param_groups
    assert out.step == 3 and out.files["scheduler.pt"] == b"opaque scheduler bytes"
    GPTNeoXForCausalLM.from_pretrained(tmp_path / "out")            # transformers loads it unchanged


def test_step_override_reaches_optimizer_and_trainer_state(tmp_path):
    reference = tmp_path / "checkpoint-3"
    write_hf_checkpoint(reference, tiny_neox())
    make_official_file(reference, tmp_path / "compressed.pt")
    import_official(tmp_path / "compressed.pt", reference, tmp_path / "out", step=1000)
    optimizer = torch.load(tmp_path / "out" / "optimizer.pt", weights_only=True)
    assert {float(entry["step"]) for entry in optimizer["state"].values()} == {1000.0}
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 1000


class NotAllowed:
    pass


@pytest.mark.parametrize("damage, message", [
    (lambda e: e.update({"lm_missing.weight": e.pop("gpt_neox.layers.1.mlp.dense_4h_to_h.bias")}),
     "'lm_missing.weight' is not a tensor of the reference"),
    (lambda e: e["gpt_neox.layers.0.attention.dense.weight"].update(
        weights_i=e["gpt_neox.layers.0.attention.dense.weight"]["weights_i"][:8]), "hold 256 4-bit indices"),
    (lambda e: e["gpt_neox.layers.0.attention.dense.weight"].update(weights_c=torch.zeros(14)), "14 entries"),
    (lambda e: e["gpt_neox.layers.0.attention.dense.weight"].update(extra=torch.zeros(1)), "unknown keys ['extra']"),
    (lambda e: e.update(evil=NotAllowed()), "not a readable official ExCP file"),
])
def test_bad_files_name_the_problem_and_write_nothing(tmp_path, damage, message):
    reference = tmp_path / "checkpoint-3"
    write_hf_checkpoint(reference, tiny_neox())
    make_official_file(reference, tmp_path / "compressed.pt")
    entries = torch.load(tmp_path / "compressed.pt", weights_only=True)
    damage(entries)
    torch.save(entries, tmp_path / "compressed.pt")
    with pytest.raises(SlimlabError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        import_official(tmp_path / "compressed.pt", reference, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_imports_then_compresses_with_slimlab(tmp_path, capsys):
    reference = tmp_path / "checkpoint-3"
    write_hf_checkpoint(reference, tiny_neox())
    make_official_file(reference, tmp_path / "compressed.pt")
    assert main(["ckpt", "import-official", str(tmp_path / "compressed.pt"), "--ref", str(reference),
                 "--out", str(tmp_path / "imported"), "--step", "4"]) == 0
    assert "2 tensors rebuilt" in capsys.readouterr().out
    assert main(["ckpt", "compress", str(tmp_path / "imported"), "--out", str(tmp_path / "imported.excp"),
                 "--mode", "lossless"]) == 0


def test_a_tied_name_is_rebuilt_once_through_the_tensor_it_shares(tmp_path):
    shared = torch.zeros(2, 2)
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2, 2),
                               "exp_avg_sq": torch.ones(2, 2)}},
                 "param_groups": [{"params": [0], "lr": 0.1}]}
    torch.save({"model": {"embed.weight": shared, "head.weight": shared}, "optimizer": optimizer,
                "param_names": ["embed.weight"]}, tmp_path / "reference.pt")
    entry = {"weights_i": torch.full((2, 2), 0.5), "opt_v_i": torch.zeros(2, 2), "opt_m_i": torch.ones(2, 2)}
    for names in (["embed.weight", "head.weight"], ["head.weight"]):  # both tied names coded, or only the alias
        torch.save({name: entry for name in names}, tmp_path / "compressed.pt")
        summary = import_official(tmp_path / "compressed.pt", tmp_path / "reference.pt", tmp_path / "out.pt",
                                  overwrite=True)
        restored = torch.load(tmp_path / "out.pt", weights_only=True)["model"]
        assert summary.tensors == 1 and summary.copied == 0
        assert torch.equal(restored["embed.weight"], torch.full((2, 2), 0.5))  # 0 + 0.5 once, not twice
        assert restored["head.weight"].data_ptr() == restored["embed.weight"].data_ptr()
