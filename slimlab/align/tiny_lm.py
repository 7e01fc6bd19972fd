"""A small, real ``transformers`` causal LM built offline: byte-level BPE tokenizer + LlamaForCausalLM.

It is pre-trained briefly on offline text (one line = one document, ending with EOS, so it learns to stop)
and saved with ``save_pretrained``; afterwards it loads by path like any Hugging Face model.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory
from slimlab.core.progress import progress
from slimlab.core.runtime import seed_all
from slimlab.core.text_corpus import builtin_text, shakespeare_plays

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def corpus_lines(name: str, characters: int = 200_000) -> list[str]:
    """Lines of an offline corpus: ``builtin`` (generated grammar) or ``shakespeare`` (the plays' spoken lines)."""
    if name == "builtin":
        return [line for line in builtin_text(characters).splitlines() if line.strip()]
    if name == "shakespeare":
        lines = []
        for text in shakespeare_plays().values():
            for line in text.splitlines():
                line = line.strip()
                # Spoken lines only: skip speaker headings (all caps) and stage/edition furniture.
                if 20 <= len(line) <= 80 and not line.isupper() and not line.startswith(("[", "*", "Enter", "Exit")):
                    lines.append(line)
        return lines
    raise SlimlabError(f"unknown corpus '{name}'; choose builtin or shakespeare")


def build_tokenizer(lines: list[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every byte string is encodable) trained on ``lines``; has BOS, EOS and PAD tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def encode_lines(tokenizer, lines: list[str], max_length: int) -> list[list[int]]:
    """BOS + tokens + EOS per line, lines longer than ``max_length`` cut (they then lose their EOS)."""
    encoded = tokenizer(lines, add_special_tokens=False)["input_ids"]
    return [([tokenizer.bos_token_id] + ids + [tokenizer.eos_token_id])[:max_length] for ids in encoded]


def pretrain_causal_lm(lines: list[str], out_dir: str | Path, hidden_size: int = 96, layers: int = 2, heads: int = 4,
                       vocab_size: int = 512, steps: int = 300, batch_size: int = 32, lr: float = 3e-3,
                       max_length: int = 64, seed: int = 0, overwrite: bool = False) -> Path:
    """Train tokenizer and a small LlamaForCausalLM on ``lines``; save both to ``out_dir`` (atomically)."""
    if len(lines) < batch_size:
        raise SlimlabError(f"need at least {batch_size} lines of text to pre-train, got {len(lines)}")
    seed_all(seed)
    tokenizer = build_tokenizer(lines, vocab_size)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2 * max_length + 64, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True, attention_dropout=0.0)
    model = LlamaForCausalLM(config)
    documents = encode_lines(tokenizer, lines, max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = random.Random(seed)
    model.train()
    for _ in progress(range(steps), "pre-train"):
        batch = [documents[rng.randrange(len(documents))] for _ in range(batch_size)]
        input_ids, attention_mask = right_pad(batch, tokenizer.pad_token_id)  # [B, L]
        labels = input_ids.masked_fill(attention_mask == 0, -100)  # no loss on padding
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    with atomic_directory(out_dir, overwrite=overwrite) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return Path(out_dir)


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, L] ids, [B, L] mask) with sequences left-aligned and padded on the right."""
    length = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, :len(ids)] = 1
    return input_ids, attention_mask


def line_prompts(lines: list[str], count: int, words: int = 2, seed: int = 0) -> list[str]:
    """Prompts = the first ``words`` words of distinct random lines (the model continues the line)."""
    rng = random.Random(seed)
    chosen = rng.sample(lines, min(count, len(lines)))
    return [" ".join(line.split()[:words]) for line in chosen]
