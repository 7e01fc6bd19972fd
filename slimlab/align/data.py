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


# Fields that look like a soft label but are not read: refused, or the pair would train as a hard preference.
# Other extra columns (id, source, score_chosen, ...) are common in public preference files and are ignored.
LABEL_FIELDS = ("preference_logit", "p_hat", "votes", "n_votes")
UNREAD_LABEL_FIELDS = ("label", "labels", "preference", "probability", "prob", "p", "soft_label", "margin")


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
        unread = [key for key in row if key.lower() in UNREAD_LABEL_FIELDS or
                  (key.lower() in LABEL_FIELDS and key not in LABEL_FIELDS)]  # "Label", "P_hat": not read either
        if unread:
            raise SlimlabError(f"{where}: field(s) {', '.join(unread)} look like a preference label but are not read; "
                               "give the soft label as preference_logit, p_hat, or votes with n_votes")
        prompt = _text(row["prompt"], tokenizer, where, "prompt")
        chosen, rejected = (_text(row[key], tokenizer, where, key) for key in ("chosen", "rejected"))
        if not prompt.strip():
            raise SlimlabError(f"{where}: empty prompt")
        p_hat = _soft_label(row, where, prior)
        if "preference_logit" in row and "p_hat" in row:  # as written by `align label`; the logit wins, so check them
            written = _number(row, "p_hat", where)
            # the logit is of p_hat clipped towards 0.5, so its sigmoid lies between 0.5 and p_hat
            if not min(written, 0.5) - 1e-6 <= p_hat <= max(written, 0.5) + 1e-6:
                raise SlimlabError(f"{where}: preference_logit {row['preference_logit']} (p {p_hat:.3f}) contradicts "
                                   f"p_hat {written}; give one soft label")
        target = _number(row, "preference_logit", where) if "preference_logit" in row else \
            float(preference_logit(p_hat, clip_eps))
        if not math.isfinite(target):
            source = "preference_logit" if "preference_logit" in row else "the soft label"
            raise SlimlabError(f"{where}: the regression target from {source} must be finite, got {target}")
        pairs.append(Pair(prompt, chosen, rejected, p_hat, target))
    return pairs


def _number(row: dict[str, Any], key: str, where: str) -> float:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):  # JSON true is not the number 1
        raise SlimlabError(f"{where}: '{key}' must be a number, got {json.dumps(value)}")
    return float(value)


def _count(row: dict[str, Any], key: str, where: str) -> float:
    value = _number(row, key, where)
    if not value.is_integer():  # n_votes 2.9 is not a number of votes, and must not become 2 silently
        raise SlimlabError(f"{where}: '{key}' must be a whole number of votes, got {row[key]}")
    return value


def _soft_label(row: dict[str, Any], where: str, prior: float) -> float:
    if "preference_logit" in row:
        logit = _number(row, "preference_logit", where)
        small = math.exp(-abs(logit))  # sigmoid without overflow for large |logit|; NaN stays NaN
        return 1.0 / (1.0 + small) if logit >= 0 else small / (1.0 + small)
    if "p_hat" in row:
        value = _number(row, "p_hat", where)
        if not 0.0 <= value <= 1.0:
            raise SlimlabError(f"{where}: p_hat must lie in [0, 1], got {value}")
        return value
    if "votes" in row or "n_votes" in row:
        if "votes" not in row or "n_votes" not in row:
            raise SlimlabError(f"{where}: 'votes' and 'n_votes' go together; give both or neither")
        wins, count = _count(row, "votes", where), _count(row, "n_votes", where)
        if not 0 <= wins <= count:
            raise SlimlabError(f"{where}: votes must lie in [0, n_votes]; got {wins} of {count:g}")
        if count + 2 * prior <= 0:
            raise SlimlabError(f"{where}: no votes (n_votes {count:g}) and no prior: p_hat would be 0 / 0")
        return float(vote_probability(wins, count, prior))
    return 1.0


def pair_row(pair: Pair) -> dict[str, Any]:
    return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected,
            "p_hat": pair.p_hat, "preference_logit": pair.target}
