"""Damaged or mismatched inputs give one clear error naming the file (and tensor), and leave no output."""

import errno
import hashlib
import json
import struct

import pytest
import torch
import zstandard

from slimlab.ckpt import CheckpointChain, ExcpCodec, compress_checkpoint, decompress_checkpoint
from slimlab.ckpt.container import MAGIC
from slimlab.core.errors import SlimlabError


def rewrite_footer(path, change):
    data = path.read_bytes()
    length = struct.unpack_from("<Q", data, len(data) - 48)[0]
    start = len(data) - 48 - length
    header = json.loads(zstandard.ZstdDecompressor().decompress(data[start:start + length]))
    change(header)
    footer = json.dumps(header).encode()
    path.write_bytes(data[:start] + footer + struct.pack("<Q32s8s", len(footer), hashlib.sha256(footer).digest(), MAGIC))


def test_truncated_file(chain, tmp_path):
    path = chain.path_for(3)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SlimlabError, match=r"step-00000003\.excp: the footer is missing"):
        chain.load(3)


def test_corrupted_stream_names_file_and_tensor(chain):
    path = chain.path_for(2)
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the first stream
    path.write_bytes(bytes(data))
    with pytest.raises(SlimlabError, match=r"step-00000002\.excp: tensor '[\w.]+'.*checksum mismatch"):
        chain.load(2)


def test_corrupted_footer(chain):
    path = chain.path_for(1)
    data = bytearray(path.read_bytes())
    data[-60] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SlimlabError, match="footer is corrupted"):
        chain.load(1)


def test_unknown_format_version(chain):
    rewrite_footer(chain.path_for(1), lambda header: header.update(version=99))
    with pytest.raises(SlimlabError, match="format version 99 is not supported"):
        chain.load(1)


def test_missing_reference(chain):
    chain.path_for(2).unlink()
    with pytest.raises(SlimlabError, match=r"step-00000003\.excp: its reference .* is missing"):
        chain.load(3)


def test_wrong_reference_is_detected(tmp_path, trained_states):
    a = CheckpointChain(tmp_path / "a", ExcpCodec(mode="lossless"))
    a.append(trained_states[0], 1)
    a.append(trained_states[1], 2)
    b = CheckpointChain(tmp_path / "b", ExcpCodec(mode="lossless"))
    b.append(trained_states[2], 1)
    # Put a's delta beside b's keyframe: the parent id does not match anything there.
    (tmp_path / "b" / "step-00000002.excp").write_bytes(a.path_for(2).read_bytes())
    with pytest.raises(SlimlabError, match="its reference .* is missing"):
        decompress_checkpoint(tmp_path / "b" / "step-00000002.excp", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shape_mismatch_against_reference(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path / "c", ExcpCodec())
    chain.append(trained_states[0], 1)
    grown = trained_states[1]
    grown.model["hidden.bias"] = torch.zeros(34)
    with pytest.raises(SlimlabError, match=r"tensor 'hidden.bias': has shape \(34,\).* reference has \(33,\)"):
        chain.append(grown, 2)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["chain.json", "step-00000001.excp"]


def test_out_of_disk_space_leaves_nothing(tmp_path, trained_states, monkeypatch):
    chain = CheckpointChain(tmp_path / "d", ExcpCodec())
    import slimlab.ckpt.container as container

    def full_disk(self, data, kind="other"):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(container.ContainerWriter, "add", full_disk)
    with pytest.raises(SlimlabError, match=r"step-00000001\.excp: could not write \(No space left on device\)"):
        chain.append(trained_states[0], 1)
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a torch file")
    with pytest.raises(SlimlabError, match=r"junk\.pt: not a readable torch.save file \(not a torch.save file"):
        compress_checkpoint(tmp_path / "junk.pt", tmp_path / "out.excp")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlimlabError, match=r"empty: no model weights found"):
        compress_checkpoint(tmp_path / "empty", tmp_path / "out.excp")
    assert not (tmp_path / "out.excp").exists()


def test_truncated_safetensors(tmp_path):
    from safetensors.torch import save_file
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    save_file({"w": torch.randn(64, 64)}, folder / "model.safetensors")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SlimlabError, match=r"model\.safetensors: not a readable safetensors file"):
        compress_checkpoint(folder, tmp_path / "out.excp")


@pytest.mark.parametrize("key", ["weight", "exp_avg", "exp_avg_sq"])
def test_non_finite_values_are_refused_by_lossy_coding(tmp_path, trained_states, key):
    first, second = trained_states[0], trained_states[1]   # the fixture is built anew for each test
    index, name = next((i, n) for i, n in enumerate(second.optimizer.param_names) if n)
    broken = (second.model[name] if key == "weight" else second.optimizer.state[index][key]).clone()
    broken.view(-1)[3] = float("inf") if key == "exp_avg_sq" else float("nan")
    if key == "weight":
        second.model[name] = broken
    else:
        second.optimizer.state[index][key] = broken
    chain = CheckpointChain(tmp_path / "chain", ExcpCodec())
    chain.append(first, 1)
    with pytest.raises(SlimlabError, match=rf"tensor '{name}': {key} holds NaN or inf.*--mode lossless"):
        chain.append(second, 2)
    assert not list((tmp_path / "chain").glob("*00000002*"))  # nothing half-written
    lossless = CheckpointChain(tmp_path / "lossless", ExcpCodec(mode="lossless"))
    lossless.append(first, 1)
    lossless.append(second, 2)  # lossless mode stores any bit pattern as it is
    decoded = lossless.load(2)
    restored = decoded.model[name] if key == "weight" else decoded.optimizer.state[index][key]
    assert torch.equal(restored.view(torch.int32), broken.view(torch.int32))


def test_bad_chain_index_is_named(chain, capsys):
    from slimlab.cli import main
    index = chain.folder / "chain.json"
    for text, message in (("[]", "not a chain index"),
                          ('{"format": "slimlab-excp-chain", "version": 99, "entries": []}', "version 99"),
                          ('{"format": "slimlab-excp-chain", "version": 1, "entries": [{"step": 1}]}',
                           "entry 0 has no str 'file'")):
        index.write_text(text)
        with pytest.raises(SlimlabError, match=message):
            CheckpointChain(chain.folder)
        assert main(["ckpt", "info", str(chain.folder)]) == 2
        assert message.split("'")[0] in capsys.readouterr().err


def test_chain_takes_the_step_a_file_records(tmp_path, capsys):
    from slimlab.cli import main
    torch.manual_seed(0)
    for name, step in (("run_step10_rank0.pt", 10), ("run_step20_rank0.pt", 20)):
        torch.save({"model": {"w": torch.randn(6)}, "step": step}, tmp_path / name)
    assert main(["ckpt", "chain", str(tmp_path / "run_step10_rank0.pt"), str(tmp_path / "run_step20_rank0.pt"),
                 "--out", str(tmp_path / "chain")]) == 0
    assert CheckpointChain(tmp_path / "chain").steps() == [10, 20]
    (tmp_path / "empty").mkdir()
    assert main(["ckpt", "info", str(tmp_path / "empty")]) == 2
    assert "no chain here" in capsys.readouterr().err


def test_plain_json_footer_of_earlier_versions_is_read(chain):
    before = chain.load(1)
    rewrite_footer(chain.path_for(1), lambda header: header.update(version=2))  # written back as plain JSON
    after = chain.load(1)
    assert all(torch.equal(after.model[name], tensor) for name, tensor in before.model.items())


def test_damaged_compressed_footer_is_named(chain):
    path = chain.path_for(1)
    data = path.read_bytes()
    length = struct.unpack_from("<Q", data, len(data) - 48)[0]
    start = len(data) - 48 - length
    footer = data[start:start + 4] + bytes(length - 4)  # zstd magic, then zeros; checksum recomputed to match
    path.write_bytes(data[:start] + footer + struct.pack("<Q32s8s", length, hashlib.sha256(footer).digest(), MAGIC))
    with pytest.raises(SlimlabError, match="the footer cannot be read"):
        chain.load(1)


def test_unknown_mask_coding_is_named(chain):
    def change(header):
        name = next(name for name, entry in header["tensors"].items() if entry["coding"] == "excp")
        header["tensors"][name]["support_coding"] = "bogus"
    rewrite_footer(chain.path_for(2), change)
    with pytest.raises(SlimlabError, match=r"step-00000002\.excp: tensor '[\w.]+' support: unknown mask coding 'bogus'"):
        chain.load(2)
