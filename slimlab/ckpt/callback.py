"""``transformers.Trainer`` integration: store every saved checkpoint compressed, resume from it.

    trainer = Trainer(..., callbacks=[ExcpTrainerCallback("runs/excp-chain")])
    trainer.train()
    folder = restore_for_trainer("runs/excp-chain", step=500, output_dir=args.output_dir)
    trainer.train(resume_from_checkpoint=folder)

After the Trainer writes ``checkpoint-<step>/``, the callback reads it (with exact parameter names taken
from the live model and optimizer), appends it to the chain, and removes the raw folder unless
``keep_latest_raw`` is set, in which case only the newest raw folder is kept.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from transformers import TrainerCallback

from slimlab.ckpt.chain import CheckpointChain, decompress_checkpoint
from slimlab.ckpt.codec import ExcpCodec
from slimlab.ckpt.names import PARAM_NAMES_FILE, align_live_names_with_file, names_from_live_objects
from slimlab.ckpt.state import read_checkpoint
from slimlab.ckpt.weight_files import read_model_tensors
from slimlab.ckpt.training import rank_folder
from slimlab.core.io import atomic_write_text, refuse_output_over_inputs


class ExcpTrainerCallback(TrainerCallback):
    def __init__(self, chain_dir: str | Path | None = None, codec: ExcpCodec | None = None,
                 keep_latest_raw: bool = False):
        self.chain_dir = chain_dir
        self.codec = codec or ExcpCodec()
        self.keep_latest_raw = keep_latest_raw
        self.chain: CheckpointChain | None = None
        self.previous_raw: Path | None = None
        self.history: list[dict] = []

    def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir() or not state.is_world_process_zero and not _is_sharded(optimizer):
            return control
        if self.chain is None:
            root = Path(self.chain_dir or Path(args.output_dir) / "excp")
            # one chain per rank only when each rank holds a shard; otherwise rank 0 writes the one chain
            self.chain = CheckpointChain(rank_folder(root) if _is_sharded(optimizer) else root, self.codec)
        names = None
        if model is not None and optimizer is not None:  # exact names from the live objects, in the file's keys
            model_tensors, _ = read_model_tensors(folder)
            names = align_live_names_with_file(names_from_live_objects(model, optimizer), model, model_tensors)
            atomic_write_text(folder / PARAM_NAMES_FILE, json.dumps(names))  # the folder stays readable alone
        if self.chain.entries and state.global_step <= self.chain.entries[-1]["step"]:
            # training resumed from an earlier step: the chain's later checkpoints belong to the abandoned run
            # (the Trainer overwrites checkpoint-<step> folders the same way)
            dropped = self.chain.rewind(state.global_step - 1)
            print(f"note: {self.chain.folder}: resumed before step {dropped[0]}; dropped the later steps {dropped}",
                  file=sys.stderr)
        result = self.chain.append(read_checkpoint(folder, names), state.global_step)
        self.history.append({"step": state.global_step, "raw_bytes": result.raw_bytes,
                             "coded_bytes": result.coded_bytes, "seconds": result.seconds})
        if self.keep_latest_raw:
            if self.previous_raw is not None and self.previous_raw.exists():
                shutil.rmtree(self.previous_raw)
            self.previous_raw = folder
        else:
            shutil.rmtree(folder)
        return control


def restore_for_trainer(chain_dir: str | Path, step: int | None, output_dir: str | Path) -> Path:
    """Decode ``step`` of the chain into ``output_dir/checkpoint-<step>`` for ``resume_from_checkpoint``; with a
    sharded optimizer each rank decodes its own chain (``chain_dir/rank-XXXXX``)."""
    own = rank_folder(chain_dir)
    chain = CheckpointChain(own if own.is_dir() else chain_dir)
    path = chain.path_for(step)
    chosen = step if step is not None else chain.steps()[-1]
    target = Path(output_dir) / f"checkpoint-{chosen}"
    refuse_output_over_inputs(target, [chain.folder])
    return decompress_checkpoint(path, target, layout="hf", overwrite=True)


def _is_sharded(optimizer) -> bool:
    return optimizer is not None and type(optimizer).__name__ == "ZeroRedundancyOptimizer"
