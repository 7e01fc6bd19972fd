"""The Trainer callback stores checkpoints compressed; training resumes from a decoded one."""

import json

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Trainer, TrainingArguments

from slimlab.ckpt import CheckpointChain
from slimlab.ckpt.callback import ExcpTrainerCallback, restore_for_trainer
from slimlab.core.errors import SlimlabError


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, count=64):
        generator = torch.Generator().manual_seed(0)
        self.rows = torch.randint(0, 64, (count, 16), generator=generator)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return {"input_ids": self.rows[index], "labels": self.rows[index]}


def make_trainer(output_dir, max_steps, callbacks=()):
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=32)
    arguments = TrainingArguments(output_dir=str(output_dir), max_steps=max_steps, save_steps=2,
                                  per_device_train_batch_size=4, learning_rate=1e-3, report_to=[], use_cpu=True,
                                  logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    return Trainer(model=GPTNeoXForCausalLM(config), args=arguments, train_dataset=TokenDataset(),
                   callbacks=list(callbacks))


def test_callback_compresses_each_save_and_resume_works(tmp_path):
    callback = ExcpTrainerCallback(tmp_path / "chain", keep_latest_raw=True)
    trainer = make_trainer(tmp_path / "out", 6, [callback])
    trainer.train()
    chain = CheckpointChain(tmp_path / "chain")
    assert chain.steps() == [2, 4, 6]
    raw_folders = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    assert raw_folders == ["checkpoint-6"]  # only the latest raw folder kept
    assert all(entry["coded_bytes"] < entry["raw_bytes"] / 3 for entry in chain.entries[1:])

    folder = restore_for_trainer(tmp_path / "chain", 4, tmp_path / "resume")
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == 4
    first_ids = [entry["id"] for entry in CheckpointChain(tmp_path / "chain").entries]
    resumed = make_trainer(tmp_path / "resume", 6, [ExcpTrainerCallback(tmp_path / "chain")])
    resumed.train(resume_from_checkpoint=str(folder))
    assert resumed.state.global_step == 6
    # the resumed run saves step 6 again: the abandoned run's step 6 is replaced, steps 2 and 4 stay as they were
    after = CheckpointChain(tmp_path / "chain").entries
    assert [e["step"] for e in after] == [2, 4, 6] and [e["id"] for e in after[:2]] == first_ids[:2]
    with pytest.raises(SlimlabError, match="lies inside the input folder"):
        restore_for_trainer(tmp_path / "chain", 4, tmp_path / "chain")
    losses = [row["loss"] for row in resumed.state.log_history if "loss" in row]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    original = [row["loss"] for row in trainer.state.log_history if "loss" in row and row["step"] > 4]
    # the resumed steps 5-6 track the uninterrupted run closely (lossy weights and moments)
    assert max(abs(a - b) for a, b in zip(losses[-2:], original[-2:])) < 0.05


def test_data_parallel_run_writes_one_chain_that_restore_finds(tmp_path, monkeypatch):
    # plain data parallelism: every rank holds the whole optimizer, rank 0 saves; the chain must not hide in a
    # per-rank folder that restore_for_trainer (run with the same WORLD_SIZE / RANK) would not open
    trainer = make_trainer(tmp_path / "out", 2)
    trainer.train()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    callback = ExcpTrainerCallback(tmp_path / "chain")
    callback.on_save(trainer.args, trainer.state, None, model=trainer.model, optimizer=trainer.optimizer)
    assert CheckpointChain(tmp_path / "chain").steps() == [2]
    folder = restore_for_trainer(tmp_path / "chain", None, tmp_path / "resume")
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == 2
