"""The ``.excp`` container: binary streams followed by a JSON footer (no pickle).

    b"SLIMEXCP" | stream 0 | stream 1 | ... | footer | u64 footer length | 32-byte SHA-256 of footer | b"SLIMEXCP"

The footer is the JSON header, zstd-compressed since version 3 (versions 1-2: plain JSON; a reader tells them
apart by the zstd frame magic, since JSON starts with '{'). Compressed, it is about a third of its JSON size:
codebooks, stream entries and optimizer scalars repeat the same keys for every tensor.

The footer comes last (unlike safetensors' leading header) so a checkpoint is written in one pass, one tensor
at a time, without holding the whole output in memory. Each stream entry in the footer carries its offset,
length and CRC-32; the footer itself is protected by its SHA-256. The content id of a file is that footer
hash: it covers every stream checksum and the parent's id, so ids form a hash chain along a checkpoint chain.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from slimlab.ckpt.weight_files import is_plain_relative
from slimlab.core.errors import SlimlabError

MAGIC = b"SLIMEXCP"
FORMAT_NAME = "slimlab-excp"
# 2 adds float-field lossless streams, 3 compresses the footer, 4 adds row/column-coded support masks,
# 5 codes order-0 masks as packed bytes (core/entropy.py); every older version is still read
FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_FOOTER_LEVEL = 15  # tens to hundreds of KB of JSON: level 19 costs 3x the time for 1% of the footer
_FOOTER_LIMIT = 1 << 30  # decompressed footer bound: a damaged length field cannot ask for more memory
_TRAILER = struct.Struct("<Q32s8s")


class ContainerWriter:
    """Appends streams to an open binary file; ``finish`` writes the footer and returns the content id."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.stream.write(MAGIC)
        self.offset = len(MAGIC)
        self.bytes_by_kind: dict[str, int] = {}

    def add(self, data: bytes | memoryview, kind: str = "other") -> dict[str, int]:
        """Write one stream; ``kind`` only feeds the size accounting (w, m, v, mask, lossless, ...)."""
        self.stream.write(data)
        entry = {"offset": self.offset, "length": len(data), "crc32": zlib.crc32(data)}
        self.offset += len(data)
        self.bytes_by_kind[kind] = self.bytes_by_kind.get(kind, 0) + len(data)
        return entry

    def finish(self, header: dict[str, Any]) -> str:
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **header,
                  "stream_bytes_by_kind": self.bytes_by_kind}
        text = json.dumps(header, separators=(",", ":"), allow_nan=True).encode()
        footer = zstandard.ZstdCompressor(level=_FOOTER_LEVEL).compress(text)
        digest = _sha256(footer)
        self.stream.write(footer)
        self.stream.write(_TRAILER.pack(len(footer), bytes.fromhex(digest), MAGIC))
        # sizes count the whole file: the footer (codebooks, scalars, per-tensor entries) is part of what is stored
        self.offset += len(footer) + _TRAILER.size
        self.bytes_by_kind["footer"] = len(footer) + _TRAILER.size
        return digest


def _parse_footer(footer: bytes, path: Path) -> dict[str, Any]:
    try:
        if footer.startswith(_ZSTD_MAGIC):
            footer = zstandard.ZstdDecompressor().decompress(footer, max_output_size=_FOOTER_LIMIT)
        header = json.loads(footer)
    except (zstandard.ZstdError, ValueError) as error:
        raise SlimlabError(f"{path}: the footer cannot be read ({error}); the file is corrupted") from error
    if not isinstance(header, dict):
        raise SlimlabError(f"{path}: the footer is not a header object; the file is corrupted")
    return header


class ContainerReader:
    """Validates the trailer and footer on open; streams are checked against their CRC when read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():  # a folder or a FIFO (which would block the open)
            raise SlimlabError(f"{self.path}: not a regular file")
        try:
            self.file = open(self.path, "rb")
        except OSError as error:
            raise SlimlabError(f"{self.path}: cannot open ({error.strerror})") from error
        size = self.file.seek(0, 2)
        if size < len(MAGIC) + _TRAILER.size:
            raise SlimlabError(f"{self.path}: too short to be a .excp file ({size} bytes); truncated?")
        self.file.seek(0)
        if self.file.read(len(MAGIC)) != MAGIC:
            raise SlimlabError(f"{self.path}: not a .excp file (bad magic bytes)")
        self.file.seek(size - _TRAILER.size)
        footer_length, digest, end_magic = _TRAILER.unpack(self.file.read(_TRAILER.size))
        if end_magic != MAGIC or footer_length > size - len(MAGIC) - _TRAILER.size:
            raise SlimlabError(f"{self.path}: the footer is missing; the file is truncated or was not finished")
        self.file.seek(size - _TRAILER.size - footer_length)
        footer = self.file.read(footer_length)
        self.content_id = _sha256(footer)
        if self.content_id != digest.hex():
            raise SlimlabError(f"{self.path}: the footer is corrupted (SHA-256 mismatch)")
        self.header: dict[str, Any] = _parse_footer(footer, self.path)
        if self.header.get("format") != FORMAT_NAME:
            raise SlimlabError(f"{self.path}: format '{self.header.get('format')}' is not {FORMAT_NAME}")
        if self.header.get("version") not in READABLE_VERSIONS:
            raise SlimlabError(f"{self.path}: format version {self.header.get('version')} is not supported by "
                               f"this slimlab (reads versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade slimlab")
        check_header(self.header, self.path)
        self.data_end = size - _TRAILER.size - footer_length
        self.size = size

    def read(self, entry: dict[str, int], what: str) -> bytes:
        """Read one stream and check it; ``what`` names the tensor and stream for error messages."""
        if not _is_stream_entry(entry):
            raise SlimlabError(f"{self.path}: {what}: the stream entry is malformed; the file is corrupted")
        offset, length = entry["offset"], entry["length"]
        if offset < len(MAGIC) or offset + length > self.data_end:
            raise SlimlabError(f"{self.path}: {what}: stream lies outside the data section; file corrupted")
        self.file.seek(offset)
        data = self.file.read(length)
        if zlib.crc32(data) != entry["crc32"]:
            raise SlimlabError(f"{self.path}: {what}: checksum mismatch, the file is corrupted")
        return data

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "ContainerReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sha256(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _is_stream_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(key), int) for key in ("offset", "length", "crc32"))


def check_header(header: dict[str, Any], path: Path) -> None:
    """Check the header's structure before anything is decoded, so a damaged or hand-edited footer (whose
    digest was recomputed) is named here instead of failing as a KeyError deep inside a decode."""
    def fail(field: str, expected: str) -> None:
        raise SlimlabError(f"{path}: header field '{field}' is not {expected}; the file is damaged or was not written "
                           "by slimlab")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    expected_types = {"is_keyframe": (bool, "true or false"), "depth": (int, "an integer"), "codec": (dict, "an object"),
                      "layout": (str, "a string"), "model_file": (str, "a string"), "aliases": (dict, "an object"),
                      "tensors": (dict, "an object"), "files": (dict, "an object"), "raw_bytes": (int, "an integer"),
                      "stream_bytes_by_kind": (dict, "an object")}
    for field, (kind, expected) in expected_types.items():
        if not isinstance(header.get(field), kind):
            fail(field, expected)
    if header.get("step") is not None and not is_int(header["step"]):
        fail("step", "an integer")
    if header.get("parent_id") is not None and not isinstance(header["parent_id"], str):
        fail("parent_id", "a content id")
    if header["layout"] not in ("hf", "torch"):
        fail("layout", "'hf' or 'torch'")
    for name, entry in header["tensors"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("coding"), str) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list) and all(is_int(d) and d >= 0 for d in entry["shape"])):
            fail(f"tensors.{name}", "a tensor entry (coding, dtype, shape)")
    for alias, target in header["aliases"].items():
        if not isinstance(target, str) or target not in header["tensors"]:
            fail(f"aliases.{alias}", "the name of a stored tensor")
    for name, entry in header["files"].items():
        if not is_plain_relative(name) or not _is_stream_entry(entry):
            fail(f"files.{name}", "a file name inside the checkpoint folder with a stream entry")
    if header.get("extra") is not None and not _is_stream_entry(header["extra"]):
        fail("extra", "a stream entry")
    optimizer = header.get("optimizer")
    if optimizer is None:
        return
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list) or \
            not isinstance(optimizer.get("param_names"), list) or not isinstance(optimizer.get("state"), dict):
        fail("optimizer", "an object with param_groups, param_names and state")
    if not all(isinstance(name, str) for name in optimizer["param_names"]):
        fail("optimizer.param_names", "a list of names")
    for index, record in optimizer["state"].items():
        if not (index.isdigit() and isinstance(record, dict) and isinstance(record.get("scalars"), dict)
                and isinstance(record.get("tensors"), dict)):
            fail(f"optimizer.state.{index}", "a parameter's state (scalars, tensors)")
