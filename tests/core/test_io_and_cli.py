import pytest

from slimlab.cli import COMMANDS, main
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory, atomic_open, atomic_write_bytes


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
