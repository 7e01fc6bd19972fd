"""JSONL in and out: prompt files, TRL-style pair files (prompt/chosen/rejected + a soft label), samples."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from slimlab.align.preferences import preference_logit, vote_probability
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_text, refuse_output_over_inputs


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    p_hat: float   # empirical P(chosen beats rejected), unclipped
    target: float  # logit(clip(p_hat)), the regression target of iREPO


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is an error naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise SlimlabError(f"{path}: file not found") from error
    except (OSError, UnicodeDecodeError) as error:  # a folder, no permission, not UTF-8 text
        raise SlimlabError(f"{path}: cannot read as UTF-8 JSON lines ({error})") from error
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise SlimlabError(f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})") from error
        if not isinstance(row, dict):
            raise SlimlabError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    if not rows:
        raise SlimlabError(f"{path}: no records found")
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], inputs: Iterable[str | Path] = ()) -> None:
    """Write JSON lines atomically; ``path`` may not be one of ``inputs`` (the file the rows were made from)."""
    refuse_output_over_inputs(path, inputs)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _text(value: Any, tokenizer, where: str, role: str) -> str:
    """A plain string, or a chat message list rendered with the tokenizer's chat template."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m
                                                 for m in value):
        if role != "prompt":  # TRL conversational pairs: the response is the last assistant message
            return str(value[-1]["content"])
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise SlimlabError(f"{where}: prompt is a chat message list but the tokenizer has no chat template")
        return tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=True)
    raise SlimlabError(f"{where}: '{role}' must be a string or a list of {{role, content}} messages")


def read_prompts(path: str | Path, tokenizer=None) -> list[str]:
    prompts = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        if "prompt" not in row:
            raise SlimlabError(f"{where}: missing 'prompt' field (keys: {', '.join(row) or 'none'})")
        prompt = _text(row["prompt"], tokenizer, where, "prompt")
        if not prompt.strip():
            raise SlimlabError(f"{where}: empty prompt")
        prompts.append(prompt)
    return prompts


def read_pairs(path: str | Path, tokenizer=None, clip_eps: float = 0.02, prior: float = 0.5) -> list[Pair]:
    """Pairs with their soft label from ``preference_logit``, ``p_hat`` or ``votes`` + ``n_votes``.

    A plain TRL row (no soft label) is a hard preference: p_hat = 1, clipped to 1 - eps for the target.
    """
    pairs = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        missing = [key for key in ("prompt", "chosen", "rejected") if key not in row]
        if missing:
            raise SlimlabError(f"{where}: missing field(s) {', '.join(missing)}")
        prompt = _text(row["prompt"], tokenizer, where, "prompt")
        chosen, rejected = (_text(row[key], tokenizer, where, key) for key in ("chosen", "rejected"))
        if not prompt.strip():
            raise SlimlabError(f"{where}: empty prompt")
        p_hat = _soft_label(row, where, prior)
        target = float(row["preference_logit"]) if "preference_logit" in row else float(preference_logit(p_hat, clip_eps))
        if not math.isfinite(target):
            source = "preference_logit" if "preference_logit" in row else "the soft label"
            raise SlimlabError(f"{where}: the regression target from {source} must be finite, got {target}")
        pairs.append(Pair(prompt, chosen, rejected, p_hat, target))
    return pairs


def _soft_label(row: dict[str, Any], where: str, prior: float) -> float:
    try:
        if "preference_logit" in row:
            return 1.0 / (1.0 + math.exp(-float(row["preference_logit"])))
        if "p_hat" in row:
            value = float(row["p_hat"])
            if not 0.0 <= value <= 1.0:
                raise SlimlabError(f"{where}: p_hat must lie in [0, 1], got {value}")
            return value
        if "votes" in row:
            if "n_votes" not in row:
                raise SlimlabError(f"{where}: 'votes' needs 'n_votes' beside it")
            wins, count = float(row["votes"]), int(row["n_votes"])
            if not 0 <= wins <= count:
                raise SlimlabError(f"{where}: votes must lie in [0, n_votes]; got {wins} of {count}")
            if count + 2 * prior <= 0:
                raise SlimlabError(f"{where}: no votes (n_votes {count}) and no prior: p_hat would be 0 / 0")
            return float(vote_probability(wins, count, prior))
    except (TypeError, ValueError, OverflowError) as error:
        raise SlimlabError(f"{where}: soft label is not a number ({error})") from error
    return 1.0


def pair_row(pair: Pair) -> dict[str, Any]:
    return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected,
            "p_hat": pair.p_hat, "preference_logit": pair.target}
