"""ExCP section of ``slimlab demo``: train a small GPT-NeoX on built-in text, store its checkpoints
compressed (ExCP and lossless), resume training from a compressed checkpoint and compare."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from slimlab.ckpt.chain import CheckpointChain
from slimlab.ckpt.codec import ExcpCodec
from slimlab.ckpt.training import load_compressed, save_compressed
from slimlab.core.plots import bar_plot, line_plot
from slimlab.core.progress import progress
from slimlab.core.runtime import seed_all
from slimlab.core.text_corpus import builtin_text, byte_tokens, random_windows


def build(seed: int, quick: bool):
    seed_all(seed)
    width = 64 if quick else 128
    config = GPTNeoXConfig(vocab_size=256, hidden_size=width, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=4 * width, max_position_embeddings=64)
    model = GPTNeoXForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    return model, optimizer


def evaluate(model, tokens) -> float:
    windows = random_windows(tokens, 16, 64, torch.Generator().manual_seed(1234))  # (16, 65)
    with torch.no_grad():
        return model(input_ids=windows[:, :-1], labels=windows[:, :-1]).loss.item()


def train_segment(model, optimizer, tokens, steps, generator):
    for _ in range(steps):
        batch = random_windows(tokens, 8, 64, generator)  # (8, 65)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def run_demo(out_dir: Path, quick: bool) -> str:
    text = builtin_text(60_000 if quick else 300_000)
    split = int(len(text) * 0.9)
    train_tokens, eval_tokens = byte_tokens(text[:split]), byte_tokens(text[split:])
    checkpoints, every = (6, 5) if quick else (10, 20)
    codecs = {"excp": ExcpCodec(), "lossless": ExcpCodec(mode="lossless")}
    for name in [*codecs, "resume"]:  # this demo's own chains from an earlier demo: a chain only grows, so start anew
        shutil.rmtree(out_dir / f"chain-{name}", ignore_errors=True)
    losses = {"uncompressed": [], "resumed from ExCP": []}
    sizes = {name: [] for name in codecs}
    raw_bytes = []
    seconds = {name: 0.0 for name in codecs}
    for arm in losses:
        model, optimizer = build(0, quick)
        generator = torch.Generator().manual_seed(0)
        for index in progress(range(1, checkpoints + 1), f"demo ExCP ({arm})"):
            train_segment(model, optimizer, train_tokens, every, generator)
            step = index * every
            if arm == "uncompressed":
                for name, codec in codecs.items():
                    started = time.perf_counter()
                    result = save_compressed(model, optimizer, out_dir / f"chain-{name}", step, codec)
                    seconds[name] += time.perf_counter() - started
                    sizes[name].append(result.coded_bytes)
                raw_bytes.append(result.raw_bytes)
            elif index % 5 == 0 or index == checkpoints // 2:  # the paper's protocol: resume from the decoded file
                save_compressed(model, optimizer, out_dir / "chain-resume", step, codecs["excp"])
                model, optimizer = build(99, quick)
                load_compressed(model, optimizer, out_dir / "chain-resume", step)
            losses[arm].append((step, evaluate(model, eval_tokens)))
    steps = [step for step, _ in losses["uncompressed"]]
    line_plot({arm: (steps, [loss for _, loss in values]) for arm, values in losses.items()},
              out_dir / "excp_eval_loss.png", "held-out loss", "step", "loss (nats)")
    delta_ratio = {name: sum(raw_bytes[1:]) / sum(size[1:]) for name, size in sizes.items()}
    bar_plot(delta_ratio, out_dir / "excp_ratio.png", "compression ratio (delta checkpoints)", "x", log_y=True)
    final = {arm: values[-1][1] for arm, values in losses.items()}
    params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(
        f"| {name} | {sum(raw_bytes) / 1e6:.2f} | {sum(size) / 1e6:.3f} | {delta_ratio[name]:.1f}x | "
        f"{8 * sum(size[1:]) / (params * (len(size) - 1)):.2f} | {sum(raw_bytes) / 1e6 / seconds[name]:.0f} |"
        for name, size in sizes.items())
    chain = CheckpointChain(out_dir / "chain-excp")
    return (f"A {params / 1e6:.2f}M-parameter GPT-NeoX trained on built-in text; {checkpoints} checkpoints "
            f"(weights + AdamW moments), one every {every} steps, stored as chains `{out_dir}/chain-*` "
            f"(keyframe every {chain.codec.keyframe_every}).\n\n"
            "| codec | raw MB (all) | coded MB (all) | ratio on delta checkpoints | bits/param (delta) | MB/s |\n"
            "|---|---|---|---|---|---|\n" + rows + "\n\n"
            f"Final held-out loss: uncompressed {final['uncompressed']:.4f} nats, resumed from decoded ExCP "
            f"checkpoints {final['resumed from ExCP']:.4f} nats (difference "
            f"{final['resumed from ExCP'] - final['uncompressed']:+.4f}).\n\n"
            "![eval loss](ckpt/excp_eval_loss.png) ![ratio](ckpt/excp_ratio.png)\n\n"
            f"Perplexity after training: {math.exp(final['uncompressed']):.2f}. Full measurements: "
            "`docs/benchmarks/excp.md`.")
