import os
import stat

import pytest
import torch

from slimlab.cli import COMMANDS, main
from slimlab.core.errors import SlimlabError
from slimlab.core.io import OUTPUT_MARKER, atomic_directory, atomic_open, atomic_write_bytes, read_json


def test_atomic_open_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as stream:
            stream.write(b"new but unfinished")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_directory_is_all_or_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_directory(tmp_path / "folder") as folder:
            (folder / "a.txt").write_text("a")
            raise ValueError("half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(tmp_path / "folder") as folder:
        (folder / "a.txt").write_text("a")
    assert (tmp_path / "folder" / "a.txt").read_text() == "a"
    with pytest.raises(SlimlabError, match="already exists"):
        with atomic_directory(tmp_path / "folder"):
            pass


def test_atomic_directory_replaces_only_its_own_folders(tmp_path, monkeypatch):
    users = tmp_path / "users"
    users.mkdir()
    (users / "photo.png").write_bytes(b"precious")
    with pytest.raises(SlimlabError, match="not written by slimlab"):
        with atomic_directory(users, overwrite=True) as folder:
            (folder / "mask.png").write_bytes(b"x")
    assert sorted(p.name for p in users.iterdir()) == ["photo.png"]  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]  # no temporary left

    with atomic_directory(tmp_path / "out") as folder:
        (folder / "first.txt").write_text("1")
    with atomic_directory(tmp_path / "out", overwrite=True) as folder:  # its own output: replaced
        (folder / "second.txt").write_text("2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_MARKER, "second.txt"]

    with pytest.raises(SlimlabError, match="would contain the input"):
        with atomic_directory(tmp_path / "out", overwrite=True, inputs=[tmp_path / "out" / "second.txt"]):
            pass
    with pytest.raises(SlimlabError, match="would contain the input"):
        with atomic_directory(tmp_path, overwrite=True, inputs=[users / "photo.png"]):
            pass
    monkeypatch.chdir(tmp_path / "out")
    with pytest.raises(SlimlabError, match="current folder"):
        with atomic_directory(".", overwrite=True):
            pass
    assert (tmp_path / "out" / "second.txt").read_text() == "2"


def test_outputs_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "file.bin", b"x")
        with atomic_directory(tmp_path / "folder"):
            pass
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    printed = capsys.readouterr().out
    for command in COMMANDS:
        assert f"{command.family} {command.name}".strip() in printed
        assert command.summary in printed


def test_unknown_command_is_a_clear_error(capsys):
    assert main(["ckpt", "squash"]) == 2
    assert "unknown command 'ckpt squash'" in capsys.readouterr().err


def test_every_command_target_imports():
    import importlib
    for command in COMMANDS:
        module_name, function_name = command.target.split(":")
        assert callable(getattr(importlib.import_module(module_name), function_name)), command


def test_read_json_names_the_file_and_what_it_should_hold(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_json(tmp_path / "list.json", list, "a list") == [1, 2]
    with pytest.raises(SlimlabError, match=r"list.json: expected a JSON object of scales, found a JSON list"):
        read_json(tmp_path / "list.json", dict, "a JSON object of scales")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SlimlabError, match=r"bad.json: cannot read a list \("):
        read_json(tmp_path / "bad.json", list, "a list")
    with pytest.raises(SlimlabError, match=r"missing.json: cannot read a list \("):
        read_json(tmp_path / "missing.json", list, "a list")


def test_an_output_whose_folder_cannot_be_made_is_named(tmp_path):
    from slimlab.core.io import atomic_directory, atomic_write_bytes
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(SlimlabError, match=r"file/out\.bin: cannot write here \(.*nothing was written"):
        atomic_write_bytes(tmp_path / "file" / "out.bin", b"data")
    with pytest.raises(SlimlabError, match=r"file/folder: cannot be created, .*file is a file"):
        with atomic_directory(tmp_path / "file" / "folder"):
            pass
    assert (tmp_path / "file").read_text() == "in the way"


class Pickled:  # a class torch.load(weights_only=True) refuses to rebuild
    pass


def test_torch_load_failures_say_what_is_wrong_in_one_line(tmp_path):
    from slimlab.core.torch_files import load_torch_file
    torch.save({"object": Pickled()}, tmp_path / "pickled.pt")
    with pytest.raises(SlimlabError, match=r"pickled\.pt: not a readable model \(it holds a pickled Python object "
                                           r"\(.*Pickled\).*save a state_dict"):
        load_torch_file(tmp_path / "pickled.pt", "model")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(SlimlabError, match=r"junk\.pt: not a readable model \(not a torch\.save file") as caught:
        load_torch_file(tmp_path / "junk.pt", "model")
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)
    torch.save({"w": torch.arange(3)}, tmp_path / "good.pt", _use_new_zipfile_serialization=False)  # legacy format
    assert torch.equal(load_torch_file(tmp_path / "good.pt")["w"], torch.arange(3))


def test_an_output_folder_under_a_file_is_refused_before_any_work(tmp_path):
    from slimlab.core.io import check_output_folder
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(SlimlabError, match=r"new/out: cannot be created, .*file is a file"):
        check_output_folder(tmp_path / "file" / "new" / "out", overwrite=True)
    check_output_folder(tmp_path / "new" / "deeper" / "out", overwrite=True)  # missing folders are made later


def test_run_directory_truncate_drops_rows_from_a_value_on(tmp_path):
    from slimlab.core.rundir import RunDirectory
    run = RunDirectory(tmp_path)
    for step in (0, 1, 2, 3):
        run.log(step=step, loss=float(step))
    run.log(note="no step")  # rows without the key stay
    run.truncate("step", 2)
    assert [row.get("step") for row in run.read_metrics()] == [0, 1, None]
    run.truncate("step", 0)
    assert run.read_metrics() == [{"note": "no step"}]
