"""Chains of ``.excp`` files: keyframes every K checkpoints, lineage found by content id.

Each file names its parent by content id, so the lineage of any file is rebuilt by reading the footers of
the ``.excp`` files in its folder; ``chain.json`` is an index for people and tools, not a dependency.
Decoding step t needs at most K - 1 delta applications after its keyframe.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from slimlab.ckpt.codec import EncodeResult, ExcpCodec
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.decode import decode_checkpoint, decode_second_moment, decode_weight
from slimlab.ckpt.state import CheckpointState, read_checkpoint, write_checkpoint
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes, atomic_write_text, refuse_output_over_inputs

INDEX_FILE = "chain.json"
INDEX_FORMAT, INDEX_VERSION = "slimlab-excp-chain", 1
_ENTRY_FIELDS = {"step": int, "file": str, "id": str, "depth": int}


def read_index(path: Path) -> list[dict]:
    """The entries of a ``chain.json``, checked: format, version and each entry's fields (a bad index is named here,
    not as a KeyError deep inside a decode)."""
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SlimlabError(f"{path}: not a readable chain index ({error})") from error
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise SlimlabError(f"{path}: not a chain index (format is not '{INDEX_FORMAT}')")
    if index.get("version") != INDEX_VERSION:
        raise SlimlabError(f"{path}: chain index version {index.get('version')!r}; this slimlab reads version "
                           f"{INDEX_VERSION}")
    entries = index.get("entries")
    if not isinstance(entries, list):
        raise SlimlabError(f"{path}: 'entries' is not a list")
    for position, entry in enumerate(entries):
        for field_name, kind in _ENTRY_FIELDS.items():
            if not isinstance(entry, dict) or not isinstance(entry.get(field_name), kind):
                raise SlimlabError(f"{path}: entry {position} has no {kind.__name__} '{field_name}'")
        if not entry["file"] or "/" in entry["file"] or "\\" in entry["file"] or entry["file"] in (".", ".."):
            raise SlimlabError(f"{path}: entry {position}: file '{entry['file']}' is not a file name in the chain "
                               "folder")
    return entries


@dataclass
class MemoryReference:
    """Decoded weights held in memory (what the encoder just reconstructed)."""
    content_id: str
    depth: int
    weights: dict[str, torch.Tensor]
    second_moments: dict[str, torch.Tensor] = field(default_factory=dict)

    def weight(self, name: str) -> torch.Tensor | None:
        return self.weights.get(name)

    def second_moment(self, name: str) -> torch.Tensor | None:
        return self.second_moments.get(name)


class LineageReference:
    """Decoded weights of a file, rebuilt tensor by tensor through its lineage (one tensor in memory)."""

    def __init__(self, readers: list[ContainerReader]):
        self.readers = readers
        self.content_id = readers[-1].content_id
        self.depth = readers[-1].header["depth"]

    def weight(self, name: str) -> torch.Tensor | None:
        if name not in self.readers[-1].header["tensors"]:
            return None
        weight = None
        for reader in self.readers:
            weight, _ = decode_weight(reader, name, weight)
        return weight

    def second_moment(self, name: str) -> torch.Tensor | None:
        second = None
        for reader in self.readers:
            second = decode_second_moment(reader, name, second)
        return second

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def lineage(path: str | Path) -> list[ContainerReader]:
    """Readers from the keyframe to ``path``, found among the ``.excp`` files of its folder."""
    path = Path(path)
    target = ContainerReader(path)
    chain = [target]
    if target.header["parent_id"] is None:
        return chain
    by_id: dict[str, Path] = {}
    for candidate in sorted(path.parent.glob("*.excp")):
        if candidate.resolve() != path.resolve():
            try:
                with ContainerReader(candidate) as other:
                    by_id[other.content_id] = candidate
            except SlimlabError:
                continue  # a damaged sibling only matters if it is on this lineage (reported below)
    while chain[0].header["parent_id"] is not None:
        parent_id = chain[0].header["parent_id"]
        if parent_id not in by_id:
            raise SlimlabError(f"{chain[0].path}: its reference (content id {parent_id[:16]}...) is missing or "
                               f"damaged in {path.parent}; it cannot be decoded without it")
        chain.insert(0, ContainerReader(by_id[parent_id]))
    return chain


def compress_checkpoint(source: str | Path, out: str | Path, reference: str | Path | None = None,
                        codec: ExcpCodec | None = None, param_names: list[str] | None = None,
                        step: int | None = None, overwrite: bool = False) -> EncodeResult:
    """Compress one checkpoint (folder or file) into ``out``; ``reference`` is the parent ``.excp`` (None: keyframe).
    ``out`` may not exist yet unless ``overwrite``, and may not be the source or a file of the reference's lineage."""
    codec = codec or ExcpCodec()
    readers = lineage(reference) if reference is not None else []
    try:
        refuse_output_over_inputs(out, [source, *(reader.path for reader in readers)])  # the reference's lineage
        if Path(out).exists() and not overwrite:
            raise SlimlabError(f"{out}: already exists; choose another output or pass overwrite")
        state = read_checkpoint(source, param_names)
        parent = LineageReference(readers) if readers else None
        return codec.encode(state, out, parent, step, source=str(source), keep_reconstruction=False)
    finally:
        for reader in readers:
            reader.close()


def load_file(path: str | Path, stats: dict[str, int] | None = None) -> CheckpointState:
    """Decode one ``.excp`` file (its lineage is found beside it)."""
    return _load_with_lineage(path, stats)[0]


def _load_with_lineage(path: str | Path, stats: dict[str, int] | None = None) -> tuple[CheckpointState, list[Path]]:
    """The decoded checkpoint and the files it was decoded from (keyframe first, ``path`` last)."""
    readers = lineage(path)
    try:
        parent = LineageReference(readers[:-1]) if len(readers) > 1 else None
        if parent is None:
            state = decode_checkpoint(readers[-1], lambda name: None, stats)
        else:
            state = decode_checkpoint(readers[-1], parent.weight, stats, parent.second_moment)
        return state, [reader.path for reader in readers]
    finally:
        for reader in readers:
            reader.close()


def decompress_checkpoint(source: str | Path, out: str | Path, step: int | None = None, layout: str | None = None,
                          overwrite: bool = False) -> Path:
    """Write a normal checkpoint (HF folder or torch file) from a ``.excp`` file or a chain folder."""
    given = source = Path(source)
    if source.is_dir():
        source = CheckpointChain(source).path_for(step)
    elif step is not None:
        raise SlimlabError(f"{source}: --step chooses a checkpoint of a chain folder; a single .excp file holds one "
                           "step")
    state, files = _load_with_lineage(source)
    return write_checkpoint(state, out, layout, overwrite, inputs=(given, *files))


class CheckpointChain:
    """A folder of ``step-XXXXXXXX.excp`` files with ``chain.json``; ``append`` picks keyframe or delta."""

    def __init__(self, folder: str | Path, codec: ExcpCodec | None = None):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise SlimlabError(f"{self.folder}: exists and is not a chain folder")
        self.codec = codec or ExcpCodec()
        self.index_path = self.folder / INDEX_FILE
        self.entries: list[dict] = []
        if self.index_path.exists():
            self.entries = read_index(self.index_path)
        self._last_reconstruction: MemoryReference | None = None

    def steps(self) -> list[int]:
        return [entry["step"] for entry in self.entries]

    def path_for(self, step: int | None = None) -> Path:
        if not self.entries:
            raise SlimlabError(f"{self.folder}: the chain is empty (no {INDEX_FILE} entries)")
        if step is None:
            return self.folder / self.entries[-1]["file"]
        if isinstance(step, bool) or not isinstance(step, int):
            raise SlimlabError(f"{self.folder}: step {step!r} is not a whole number")
        for entry in self.entries:
            if entry["step"] == step:
                return self.folder / entry["file"]
        raise SlimlabError(f"{self.folder}: no checkpoint for step {step}; steps: {self.steps()}")

    def matches_disk(self) -> bool:
        """Whether ``chain.json`` still lists what this object holds (another process or a user may have changed
        or removed the folder since)."""
        return (read_index(self.index_path) if self.index_path.exists() else []) == self.entries

    def rewind(self, step: int) -> list[int]:
        """Drop the entries after ``step`` and their files (a run resumed from ``step`` writes its own future);
        returns the steps dropped."""
        dropped = [entry for entry in self.entries if entry["step"] > step]
        self.entries = [entry for entry in self.entries if entry["step"] <= step]
        self._last_reconstruction = None
        self._write_index()
        for entry in dropped:
            (self.folder / entry["file"]).unlink(missing_ok=True)
        return [entry["step"] for entry in dropped]

    def append(self, state: CheckpointState, step: int) -> EncodeResult:
        """Compress ``state`` as the next checkpoint of the chain."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise SlimlabError(f"{self.folder}: step {step!r} is not a whole number >= 0")
        if self.entries and step <= self.entries[-1]["step"]:
            raise SlimlabError(f"{self.folder}: step {step} is not after the last step {self.entries[-1]['step']}")
        self.folder.mkdir(parents=True, exist_ok=True)
        reference = None
        if self.entries and self.entries[-1]["depth"] + 1 < self.codec.keyframe_every:
            reference = self._reference()
        out = self.folder / f"step-{step:08d}.excp"
        if out.exists():  # not in chain.json: someone else's file, never replaced
            raise SlimlabError(f"{out}: already exists and is not listed in {self.index_path.name}; move it away")
        try:
            result = self.codec.encode(state, out, reference, step)
        finally:
            if isinstance(reference, LineageReference):
                reference.close()
        depth = 0 if reference is None else reference.depth + 1
        self._last_reconstruction = MemoryReference(result.content_id, depth, result.reconstructed,
                                                    result.second_moments)
        self.entries.append({"step": step, "file": out.name, "id": result.content_id,
                             "parent_id": None if reference is None else reference.content_id, "depth": depth,
                             "raw_bytes": result.raw_bytes, "coded_bytes": result.coded_bytes})
        self._write_index()
        return result

    @contextlib.contextmanager
    def transaction(self) -> Iterator["CheckpointChain"]:
        """On an error inside the block, remove the files appended in it and restore ``chain.json`` (or remove
        the folder if the block created it), so a failed run leaves the chain as it found it."""
        created, before = not self.folder.exists(), len(self.entries)
        index_before = self.index_path.read_bytes() if self.index_path.exists() else None
        try:
            yield self
        except BaseException:
            for entry in self.entries[before:]:
                (self.folder / entry["file"]).unlink(missing_ok=True)
            self.entries = self.entries[:before]
            self._last_reconstruction = None
            if index_before is None:
                self.index_path.unlink(missing_ok=True)
            else:  # byte for byte: not rewritten with this run's codec settings
                atomic_write_bytes(self.index_path, index_before)
            if created:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()
            raise

    def load(self, step: int | None = None, stats: dict[str, int] | None = None) -> CheckpointState:
        return load_file(self.path_for(step), stats)

    def _reference(self):
        last = self.entries[-1]
        if self._last_reconstruction is not None and self._last_reconstruction.content_id == last["id"]:
            return self._last_reconstruction
        return LineageReference(lineage(self.folder / last["file"]))

    def _write_index(self) -> None:
        index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "codec": self.codec.settings(),
                 "entries": self.entries}
        atomic_write_text(self.index_path, json.dumps(index, indent=1))
