"""Hand-edited files (footer digest recomputed), malformed optimizer state and failed chain runs: each is named,
exits non-zero through the CLI, and writes nothing outside or beside what existed before."""

import math
import os

import pytest
import torch

from slimlab.cli import main
from slimlab.ckpt import CheckpointChain, ExcpCodec, compress_checkpoint, decompress_checkpoint
from slimlab.core.errors import SlimlabError
from tests.ckpt.test_bad_input import rewrite_footer


def a_stream_entry(header):
    return next(value for entry in header["tensors"].values() for value in entry.values()
                if isinstance(value, dict) and "offset" in value)


@pytest.mark.parametrize("file_name", ["../escaped.txt", "/tmp/slimlab-escaped.txt", "a/../../b"])
def test_side_file_names_cannot_leave_the_output_folder(chain, tmp_path, file_name):
    def add_file(header):
        header["files"][file_name] = a_stream_entry(header)
    rewrite_footer(chain.path_for(1), add_file)
    with pytest.raises(SlimlabError, match="is not a file name inside the checkpoint folder"):
        decompress_checkpoint(chain.path_for(1), tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, field", [
    (lambda h: h.pop("tensors"), "'tensors' is not an object"),
    (lambda h: h["tensors"]["embed.weight"].update(shape="abc"), "tensors.embed.weight"),
    (lambda h: h.update(parent_id=5), "'parent_id' is not a content id"),
    (lambda h: h.update(optimizer=[]), "'optimizer' is not an object"),
    (lambda h: h["aliases"].update(extra="missing.weight"), "aliases.extra"),
])
def test_malformed_header_fields_are_named(chain, capsys, change, field):
    rewrite_footer(chain.path_for(1), change)
    for command in (["ckpt", "info", str(chain.path_for(1))],
                    ["ckpt", "decompress", str(chain.path_for(1)), "--out", str(chain.folder / "out")]):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert "step-00000001.excp: header field" in error and field in error and "Traceback" not in error
    assert not (chain.folder / "out").exists()


def test_a_malformed_tensor_entry_names_the_tensor(chain, tmp_path):
    rewrite_footer(chain.path_for(2), lambda h: h["tensors"]["embed.weight"].pop("codebook"))  # a delta file
    with pytest.raises(SlimlabError, match=r"step-00000002\.excp: tensor 'embed\.weight': the entry is malformed"):
        decompress_checkpoint(chain.path_for(2), tmp_path / "out")


GOOD_GROUPS = [{"params": [0], "lr": 0.1}]


@pytest.mark.parametrize("optimizer, message", [
    ({"state": [], "param_groups": GOOD_GROUPS}, "optimizer 'state' is a list"),
    ({"state": {"p0": {}}, "param_groups": GOOD_GROUPS}, "state entry 'p0' is not an integer parameter id"),
    ({"state": {0: 5}, "param_groups": GOOD_GROUPS}, "state entry 0 is not an integer parameter id with a dict"),
    ({"state": {}, "param_groups": {"params": [0]}}, "'param_groups' is a dict, not a list"),
    ({"state": {}, "param_groups": [{"lr": 0.1}]}, "param group 0 has no 'params' list"),
    ({"state": {}, "param_groups": [{"params": ["w"]}]}, "param group 0 has no 'params' list"),
])
def test_malformed_optimizer_state_is_named(tmp_path, optimizer, message):
    torch.save({"model": {"w": torch.ones(3)}, "optimizer": optimizer}, tmp_path / "run.pt")
    with pytest.raises(SlimlabError, match=rf"run\.pt: .*{message}"):
        compress_checkpoint(tmp_path / "run.pt", tmp_path / "out.excp")
    assert not (tmp_path / "out.excp").exists()


def test_negative_second_moments_are_refused_by_lossy_coding(tmp_path, trained_states):
    state = trained_states[0]
    index, name = next((i, n) for i, n in enumerate(state.optimizer.param_names) if n)
    state.optimizer.state[index]["exp_avg_sq"].view(-1)[0] = -1e-9
    with pytest.raises(SlimlabError, match=rf"tensor '{name}': exp_avg_sq holds negative values"):
        CheckpointChain(tmp_path / "chain", ExcpCodec()).append(state, 1)


@pytest.mark.parametrize("setting", [{"alpha": math.nan}, {"alpha": math.inf}, {"alpha": -1.0}, {"beta": math.nan}])
def test_codec_settings_must_be_finite_and_non_negative(setting):
    with pytest.raises(SlimlabError, match=f"{next(iter(setting))} must be a finite number >= 0"):
        ExcpCodec(**setting)


def test_a_failed_chain_run_leaves_the_chain_as_it_was(tmp_path, capsys):
    torch.manual_seed(0)
    for step in (10, 20, 30):
        torch.save({"model": {"w": torch.randn(6) + step}, "step": step}, tmp_path / f"step{step}.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    out = tmp_path / "chain"
    assert main(["ckpt", "chain", str(tmp_path / "step10.pt"), str(tmp_path / "broken.pt"), "--out", str(out)]) == 2
    assert "broken.pt" in capsys.readouterr().err and not out.exists()  # created by the run, so removed again

    assert main(["ckpt", "chain", str(tmp_path / "step10.pt"), "--out", str(out)]) == 0
    index_before = (out / "chain.json").read_bytes()
    assert main(["ckpt", "chain", str(tmp_path / "step20.pt"), str(tmp_path / "broken.pt"), "--out", str(out)]) == 2
    assert (out / "chain.json").read_bytes() == index_before
    assert sorted(path.name for path in out.iterdir()) == ["chain.json", "step-00000010.excp"]
    assert main(["ckpt", "chain", str(tmp_path / "step20.pt"), "--out", str(tmp_path)]) == 2  # would hold an input
    assert "would contain the input" in capsys.readouterr().err


def test_a_failed_chain_run_restores_chain_json_byte_for_byte_and_spares_other_files(tmp_path):
    torch.save({"model": {"w": torch.ones(6)}, "step": 10}, tmp_path / "step10.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    out = tmp_path / "chain"
    out.mkdir()  # an existing, empty folder: a failed run leaves it empty
    assert main(["ckpt", "chain", str(tmp_path / "step10.pt"), str(tmp_path / "broken.pt"), "--out", str(out)]) == 2
    assert list(out.iterdir()) == []
    assert main(["ckpt", "chain", str(tmp_path / "step10.pt"), "--out", str(out)]) == 0
    index = (out / "chain.json").read_bytes()
    assert main(["ckpt", "chain", str(tmp_path / "broken.pt"), "--out", str(out), "--bits", "3"]) == 2
    assert (out / "chain.json").read_bytes() == index  # not rewritten with the failed run's settings
    (out / "step-00000020.excp").write_bytes(b"a file of the user's")
    torch.save({"model": {"w": torch.ones(6)}, "step": 20}, tmp_path / "step20.pt")
    assert main(["ckpt", "chain", str(tmp_path / "step20.pt"), "--out", str(out)]) == 2
    assert (out / "step-00000020.excp").read_bytes() == b"a file of the user's"


def test_save_compressed_follows_the_folder_on_disk_and_checks_its_arguments(tmp_path):
    import shutil

    from slimlab.ckpt import load_compressed, save_compressed
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_compressed(model, optimizer, tmp_path / "c", 1)
    save_compressed(model, optimizer, tmp_path / "c", 2)
    shutil.rmtree(tmp_path / "c")  # removed behind the open chain's back: the next save starts a new chain
    save_compressed(model, optimizer, tmp_path / "c", 3)
    assert load_compressed(model, optimizer, tmp_path / "c") == 3
    for step, message in ((1.5, "step 1.5 is not a whole number"), (-3, "step -3 is not a whole number"),
                          (True, "step True is not a whole number")):
        with pytest.raises(SlimlabError, match=message):
            save_compressed(model, optimizer, tmp_path / "d", step)
    with pytest.raises(SlimlabError, match="codec must be an ExcpCodec"):
        save_compressed(model, optimizer, tmp_path / "d", 1, codec="excp")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SlimlabError, match="file: exists and is not a chain folder"):
        save_compressed(model, optimizer, tmp_path / "file", 1)
    with pytest.raises(SlimlabError, match="step '1' is not a whole number"):
        load_compressed(model, optimizer, tmp_path / "c", step="1")
    assert ExcpCodec(bits=3).bits == (3, 3, 3)
    for setting, message in (({"quantizer": "x"}, "quantizer 'x'"), ({"zstd_level": 99}, "zstd_level must be")):
        with pytest.raises(SlimlabError, match=message):
            ExcpCodec(**setting)


def test_chain_index_entries_must_name_files_of_the_chain_folder(chain, capsys):
    import json
    index = json.loads((chain.folder / "chain.json").read_text())
    index["entries"][0]["file"] = "../../../etc/passwd"
    (chain.folder / "chain.json").write_text(json.dumps(index))
    assert main(["ckpt", "info", str(chain.folder)]) == 2
    captured = capsys.readouterr()
    assert "is not a file name in the chain folder" in captured.err and captured.out == ""
    fifo = chain.folder / "fifo.excp"
    os.mkfifo(fifo)
    assert main(["ckpt", "info", str(fifo)]) == 2  # refused, not blocked on the open
    assert "not a regular file" in capsys.readouterr().err
