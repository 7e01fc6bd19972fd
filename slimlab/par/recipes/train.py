"""Train a PAR model (AAP or a baseline head) with weighted BCE; resumable, data-parallel under torchrun.

Read top to bottom: data -> model (+ co-occurrence prior) -> loop over epochs -> evaluate -> checkpoint.
Shuffling and flips are seeded by (seed, epoch, step), so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from slimlab.core.config import config_to_dict
from slimlab.core.distributed import (all_reduce_mean, barrier, init_from_environment, is_distributed,
                                      is_main_process, rank, world_size)
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes, atomic_write_text, refuse_output_over_inputs
from slimlab.core.progress import progress
from slimlab.core.rundir import RunDirectory
from slimlab.core.runtime import seed_all, select_device
from slimlab.par.backbone import load_backbone_weights
from slimlab.par.checkpoint import check_resumable, load_checkpoint, load_weights, save_checkpoint
from slimlab.par.config import ParTrainConfig
from slimlab.par.data import check_splits, image_folders, load_attribute_data, to_model_input
from slimlab.par.evaluate import evaluate_model
from slimlab.par.losses import attribute_loss, positive_ratio
from slimlab.par.model import create_model
from slimlab.par.pooling import base_rates, cooccurrence_matrices, shuffle_cooccurrence

RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint.pt", "result.json", "plots/loss.png")  # what a run writes


def main(cfg: ParTrainConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    init_from_environment()
    seed_all(cfg.seed)
    device = select_device(cfg.device)
    out_dir = Path(cfg.out_dir)
    refuse_output_over_inputs(out_dir, (cfg.data_root, cfg.images_root, cfg.backbone_weights))
    if out_dir.exists() and not out_dir.is_dir():
        raise SlimlabError(f"{out_dir}: out_dir exists and is a file, not a folder; choose a folder for the run")
    if (out_dir / "checkpoint.pt").exists() and not cfg.resume:
        raise SlimlabError(f"{out_dir}: already holds a run (checkpoint.pt); pass resume=true to continue it, or "
                           "choose another out_dir")
    data = load_attribute_data(cfg)
    refuse_output_over_inputs(out_dir, image_folders(data))
    check_splits(data, cfg)
    with undone_on_failure(out_dir) if is_main_process() else contextlib.nullcontext():  # only rank 0 writes
        return _train(cfg, data, device, out_dir)


@contextlib.contextmanager
def undone_on_failure(out_dir: Path):
    """A run that fails leaves no partial run behind: a folder it created is removed, and in an existing one (a
    resume, a rerun) each run file gets its earlier contents back or is removed if it is new. A run stopped on
    purpose (Ctrl-C, stop_after_epochs) keeps its last epoch checkpoint, each written whole, to resume from."""
    created = out_dir.absolute()  # the outermost folder this run creates (parents included) goes if it fails
    while not created.parent.exists():
        created = created.parent
    existed = out_dir.exists()
    before = {name: (out_dir / name).read_bytes() if (out_dir / name).is_file() else None for name in RUN_FILES}
    had_plots = (out_dir / "plots").is_dir()
    try:
        yield
    except Exception:
        if not existed:
            shutil.rmtree(created, ignore_errors=True)
            raise
        for name, content in before.items():
            if content is not None:
                atomic_write_bytes(out_dir / name, content)
            else:
                (out_dir / name).unlink(missing_ok=True)
        if not had_plots:
            with contextlib.suppress(OSError):
                (out_dir / "plots").rmdir()
        raise


def _train(cfg: ParTrainConfig, data, device: torch.device, out_dir: Path) -> dict:
    model = build_model(cfg, data).to(device)
    if cfg.backbone_weights:
        load_backbone_weights(model.trunk, cfg.backbone_weights)
    ratio = positive_ratio(data.train_labels).to(device) if cfg.loss_weighting == "exp_ratio" else None
    sampler = DistributedSampler(data.train, num_replicas=world_size(), rank=rank(), shuffle=True, seed=cfg.seed)
    loader = DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler, drop_last=False)
    total_steps = cfg.epochs * len(loader)
    optimizer = torch.optim.Adam(parameter_groups(model, cfg), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))

    run = RunDirectory(out_dir)
    start_epoch, checkpoint_path = 0, out_dir / "checkpoint.pt"
    if cfg.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        check_resumable(checkpoint_path, state, cfg)  # before load_state_dict, whose error would not say why
        load_weights(checkpoint_path, model, state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
        except (KeyError, ValueError, TypeError, RuntimeError) as error:  # torch's types for a state that does not fit
            raise SlimlabError(f"{checkpoint_path}: damaged PAR checkpoint, its optimizer or schedule state does not "
                               f"fit this run ({type(error).__name__}: {error})") from error
        start_epoch = state["epoch"]
        run.truncate("epoch", start_epoch + 1)  # rows logged after the last checkpoint (an interrupted epoch)
    run.write_config(cfg)  # after the checks: a refused rerun leaves a finished run's config.yaml alone
    trained = DistributedDataParallel(model) if is_distributed() else model

    last_epoch = min(cfg.epochs, cfg.stop_after_epochs) if cfg.stop_after_epochs else cfg.epochs
    for epoch in range(start_epoch, last_epoch):
        model.train()
        sampler.set_epoch(epoch)
        loss_sum, batches = torch.zeros((), device=device), 0
        for step, (images, labels) in enumerate(progress(loader, description=f"epoch {epoch + 1}/{cfg.epochs}")):
            images, labels = to_model_input(images.to(device)), labels.to(device)        # (B, 3, H, W), (B, A)
            flip = torch.rand(images.shape[0], generator=_step_generator(cfg.seed, epoch, step)) < 0.5
            images = torch.where(flip.to(device)[:, None, None, None], images.flip(3), images)  # left-right mirror
            loss = attribute_loss(trained(images), labels, ratio, cfg.own_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum, batches = loss_sum + loss.detach(), batches + 1
        epoch_loss = float(all_reduce_mean(loss_sum / max(batches, 1)))
        row = {"epoch": epoch + 1, "loss": epoch_loss, "learning_rate": schedule.get_last_lr()[0]}
        if cfg.evaluate_every and (epoch + 1) % cfg.evaluate_every == 0 and epoch + 1 < cfg.epochs and is_main_process():
            row.update(_headline(evaluate_model(model, data.test, device, cfg.batch_size)))
        run.log(**row)
        if is_main_process():
            save_checkpoint(checkpoint_path, model, optimizer, schedule, epoch + 1, cfg, data)

    result = {"epochs": last_epoch, "world_size": world_size(), "replicas_in_sync": _replicas_in_sync(model)}
    if is_main_process() and last_epoch == cfg.epochs:
        metrics = evaluate_model(model, data.test, device, cfg.batch_size, data.weak_attributes)
        result.update(metrics, attribute_names=list(data.attribute_names),
                      final_loss=run.read_metrics()[-1]["loss"] if run.read_metrics() else None,
                      config=config_to_dict(cfg))
        run.log(epoch=cfg.epochs, **_headline(metrics))
        run.plot("epoch", ["loss"], "loss")
        atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2))
    barrier()  # the other ranks wait for the main process's evaluation, so every rank leaves the group together
    return result


def build_model(cfg: ParTrainConfig, data) -> torch.nn.Module:
    """The model of ``cfg.head``; for AAP the co-occurrence prior comes from training labels (or a control)."""
    given_positive = given_negative = rates = None
    if cfg.head == "aap":
        source = data.oracle_labels if cfg.prior == "oracle" else data.train_labels
        given_positive, given_negative = cooccurrence_matrices(source)
        rates = base_rates(source) if cfg.combine == "log_odds" else None
        if cfg.prior == "shuffled":
            given_positive, given_negative = shuffle_cooccurrence(given_positive, given_negative, cfg.seed)
    return create_model(cfg.head, data.attribute_to_branch, width=cfg.width, blocks_per_stage=cfg.blocks_per_stage,
                        branch_dim=cfg.branch_dim, regions=cfg.regions, given_positive=given_positive,
                        given_negative=given_negative, mixing=cfg.mixing, partner_weights=cfg.partner_weights,
                        context_detach=cfg.context_detach, partner_init=cfg.partner_init,
                        receptive_field=cfg.receptive_field, combine=cfg.combine, rates=rates)


def parameter_groups(model: torch.nn.Module, cfg: ParTrainConfig) -> list[dict]:
    """The AAP mixing parameters are few and start uninformed, so they get a larger step (like a head learning rate)."""
    pooling = [p for name, p in model.named_parameters() if name.startswith("pooling.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("pooling.")]
    groups = [{"params": rest}]
    if pooling:
        groups.append({"params": pooling, "lr": cfg.learning_rate * cfg.pooling_learning_rate_scale, "weight_decay": 0.0})
    return groups


def _step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + step)


def _headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("mA", "accuracy", "precision", "recall", "f1") if key in metrics}


def _replicas_in_sync(model: torch.nn.Module) -> bool:
    """True when every rank holds the same weights (checked by comparing a checksum across ranks)."""
    if not is_distributed():
        return True
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().cpu()
    mean = all_reduce_mean(checksum.clone())
    return bool(torch.allclose(mean, checksum, rtol=1e-9, atol=1e-9))
