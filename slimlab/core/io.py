"""Atomic file output and content hashing.

Every output slimlab writes goes through a temporary sibling and an ``os.replace``, so a crash, a full
disk or a bad input never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from slimlab.core.errors import SlimlabError

_HASH_CHUNK = 1 << 22


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    handle, temporary = _make_temporary(path, tempfile.mkstemp)
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual permissions
        os.replace(temporary, path)
    except OSError as error:
        _remove_quietly(temporary)
        raise SlimlabError(f"{path}: could not write ({error.strerror or error}); nothing was written") from error
    except BaseException:
        _remove_quietly(temporary)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as stream:
        stream.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as stream:
        stream.write(text)


OUTPUT_MARKER = ".slimlab-output"  # in every folder atomic_directory writes: only such folders are ever replaced


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False,
                     inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` only if the block finishes without error.

    ``overwrite`` replaces an existing ``path`` only if slimlab wrote it (it holds the ``OUTPUT_MARKER`` file), so
    a folder of the user's is never deleted; ``inputs`` (files or folders the caller reads) and ``path`` must not
    overlap, so an output never replaces or changes what it was made from.
    """
    path = Path(path)
    check_output_folder(path, overwrite, inputs)
    temporary = Path(_make_temporary(path, tempfile.mkdtemp))
    try:
        (temporary / OUTPUT_MARKER).write_text("written by slimlab; the folder is replaced when written again\n")
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp makes 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(temporary, path)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise SlimlabError(f"{path}: could not write ({error.strerror or error}); nothing was written") from error
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _make_temporary(path: Path, make):
    """A temporary sibling of ``path`` made by ``make`` (mkstemp / mkdtemp); a folder that cannot be created or
    written (read-only, a file in the way) is named in a SlimlabError, before anything is written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return make(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise SlimlabError(f"{path}: cannot write here ({error.strerror or error}: {error.filename or path.parent}); "
                           "nothing was written") from error


def check_output_folder(path: Path, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Raise a SlimlabError naming the reason if ``path`` may not become (or be replaced by) an output folder."""
    refuse_output_over_inputs(path, inputs)
    if _inside(Path.cwd().resolve(), path.resolve()):
        raise SlimlabError(f"{path}: is the current folder or one above it; choose a new output folder")
    if not path.exists():
        _check_writable_parent(path)  # callers check before long work: a read-only place is named now, not after
        return
    if not overwrite:
        raise SlimlabError(f"{path}: already exists; choose another output or remove it first")
    if not path.is_dir() or not (path / OUTPUT_MARKER).is_file():
        raise SlimlabError(f"{path}: exists and was not written by slimlab (no {OUTPUT_MARKER} file in it), so it is "
                           "not replaced; choose another output or remove it first")


def _check_writable_parent(path: Path) -> None:
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SlimlabError(f"{path}: cannot be created, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SlimlabError(f"{path}: cannot be created, {ancestor} is not writable")


def refuse_output_over_inputs(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Raise a SlimlabError if the output file or folder is an input, holds one, or lies inside an input folder
    (empty entries are skipped): inputs are never replaced or modified."""
    resolved = Path(output).resolve()
    for item in inputs:
        if item and _inside(Path(item).resolve(), resolved):
            raise SlimlabError(f"{output}: the output would contain the input {item}; choose an output that does "
                               "not hold the inputs")
        if item and Path(item).is_dir() and _inside(resolved, Path(item).resolve()):
            raise SlimlabError(f"{output}: lies inside the input folder {item}; write it elsewhere so the input "
                               "stays as it was")


def _inside(candidate: Path, folder: Path) -> bool:
    return candidate == folder or folder in candidate.parents


def read_json(path: str | os.PathLike, expected: type, what: str):
    """The JSON value in ``path``, which must be of type ``expected``; errors name the file and ``what`` it should
    hold (e.g. "a JSON list of parameter names")."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SlimlabError(f"{path}: cannot read {what} ({error})") from error
    if not isinstance(value, expected):
        raise SlimlabError(f"{path}: expected {what}, found a JSON {type(value).__name__}")
    return value


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
