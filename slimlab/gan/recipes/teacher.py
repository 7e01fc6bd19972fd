"""Teacher recipes: pix2pix (paired) and CycleGAN (unpaired), plain loops with checkpointing and resume.

The same recipe with a thin ``ngf`` is the "student trained from scratch" baseline of the benchmark.
Outputs in ``out_dir``: G.pt + D.pt (paired) or G_AB.pt, G_BA.pt, D_A.pt, D_B.pt (unpaired), state.pt
(resumable), metrics.jsonl, config.yaml and plots/.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from slimlab.core.errors import SlimlabError
from slimlab.core.io import refuse_output_over_inputs
from slimlab.core.progress import progress
from slimlab.core.rundir import RunDirectory
from slimlab.core.runtime import seed_all, select_device
from slimlab.gan.checkpoint import load_generator, save_discriminator, save_generator
from slimlab.gan.config import TeacherConfig
from slimlab.gan.data import Augmentation, StepSampler, paired_folder, resolve_data, unpaired_folders
from slimlab.gan.losses import conditional_input, discriminator_loss, lsgan
from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, build_generator, slice_init
from slimlab.gan.training import (adam, all_finite, init_weights, linear_decay_lr, resume_point, save_state,
                                  seed_step, set_lr)


def generator_spec(cfg: TeacherConfig) -> GeneratorSpec:
    return GeneratorSpec(kind=cfg.generator, ngf=cfg.ngf, n_blocks=cfg.n_blocks, num_downs=cfg.num_downs,
                         global_skip=cfg.global_skip)


def build_networks(cfg: TeacherConfig, device: torch.device) -> dict[str, torch.nn.Module]:
    """pix2pix: G and a conditional D (sees input + image, 6 channels). CycleGAN: two G, two D."""
    init = torch.Generator().manual_seed(cfg.seed)
    spec = generator_spec(cfg)
    if cfg.mode == "paired":
        networks = {"G": build_generator(spec), "D": PatchDiscriminator(6, cfg.ndf)}
    else:
        networks = {"G_AB": build_generator(spec), "G_BA": build_generator(spec),
                    "D_A": PatchDiscriminator(3, cfg.ndf), "D_B": PatchDiscriminator(3, cfg.ndf)}
    networks = {name: init_weights(net, init) for name, net in networks.items()}
    if cfg.slice_from:  # after the random init, so the sliced filters are not overwritten
        source = sliced_source(cfg, spec)  # first: its checks name the problem before networks["G"] is looked up
        slice_init(networks["G"], source)
    return {name: net.to(device).train() for name, net in networks.items()}


def sliced_source(cfg: TeacherConfig, spec: GeneratorSpec) -> torch.nn.Module:
    """The generator whose leading filters start G: same kind and depth as ``spec``, at least as wide."""
    if cfg.mode != "paired":
        raise SlimlabError(f"slice_from={cfg.slice_from}: only for mode=paired")
    source, source_spec = load_generator(cfg.slice_from)
    for field in ("kind", "n_blocks", "num_downs", "input_channels", "output_channels", "global_skip"):
        if getattr(source_spec, field) != getattr(spec, field):
            raise SlimlabError(f"slice_from={cfg.slice_from}: its {field} is {getattr(source_spec, field)}, "
                               f"this run's is {getattr(spec, field)}")
    if source_spec.ngf < spec.ngf:
        raise SlimlabError(f"slice_from={cfg.slice_from}: its ngf {source_spec.ngf} is narrower than ngf={spec.ngf}")
    return source


def build_optimizers(cfg: TeacherConfig, networks: dict) -> dict[str, torch.optim.Optimizer]:
    generators = [p for name, net in networks.items() if name.startswith("G") for p in net.parameters()]
    discriminators = [p for name, net in networks.items() if name.startswith("D") for p in net.parameters()]
    return {"G": adam(generators, cfg.lr, cfg.beta1), "D": adam(discriminators, cfg.lr, cfg.beta1)}


def pix2pix_step(networks: dict, optimizers: dict, a: torch.Tensor, b: torch.Tensor, cfg: TeacherConfig) -> dict:
    """One D update then one G update. a, b: (B, 3, H, W) input and ground truth."""
    G, D = networks["G"], networks["D"]
    fake = G(a)  # (B, 3, H, W)
    d_loss = discriminator_loss(D(torch.cat([a, b], 1)), D(torch.cat([a, fake.detach()], 1)))
    optimizers["D"].zero_grad(set_to_none=True)
    d_loss.backward()
    optimizers["D"].step()

    D.requires_grad_(False)  # G's step needs gradients through D, not into it
    g_gan = lsgan(D(conditional_input(6, a, fake)), True)
    g_l1 = F.l1_loss(fake, b)
    g_loss = g_gan + cfg.lambda_l1 * g_l1
    optimizers["G"].zero_grad(set_to_none=True)
    g_loss.backward()
    optimizers["G"].step()
    D.requires_grad_(True)
    return {"d": d_loss.item(), "g_gan": g_gan.item(), "g_l1": g_l1.item(), "g": g_loss.item()}


def cyclegan_step(networks: dict, optimizers: dict, a: torch.Tensor, b: torch.Tensor, cfg: TeacherConfig) -> dict:
    """One update of both D then both G. a, b: unaligned (B, 3, H, W) batches of domains A and B."""
    G_AB, G_BA, D_A, D_B = (networks[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
    fake_b, fake_a = G_AB(a), G_BA(b)
    d_a = discriminator_loss(D_A(a), D_A(fake_a.detach()))
    d_b = discriminator_loss(D_B(b), D_B(fake_b.detach()))
    optimizers["D"].zero_grad(set_to_none=True)
    (d_a + d_b).backward()
    optimizers["D"].step()

    D_A.requires_grad_(False)
    D_B.requires_grad_(False)
    g_gan = lsgan(D_B(fake_b), True) + lsgan(D_A(fake_a), True)
    cycle = F.l1_loss(G_BA(fake_b), a) + F.l1_loss(G_AB(fake_a), b)
    g_loss = g_gan + cfg.lambda_cycle * cycle
    identity = torch.zeros(())
    if cfg.lambda_identity > 0:  # G_AB should leave B images alone (keeps colours)
        identity = F.l1_loss(G_AB(b), b) + F.l1_loss(G_BA(a), a)
        g_loss = g_loss + cfg.lambda_identity * cfg.lambda_cycle * identity
    optimizers["G"].zero_grad(set_to_none=True)
    g_loss.backward()
    optimizers["G"].step()
    D_A.requires_grad_(True)
    D_B.requires_grad_(True)
    return {"d_a": d_a.item(), "d_b": d_b.item(), "g_gan": g_gan.item(), "cycle": cycle.item(),
            "identity": identity.item(), "g": g_loss.item()}


def train_teacher(cfg: TeacherConfig) -> Path:
    """Train to ``cfg.steps`` (continuing from out_dir/state.pt when present); returns out_dir."""
    device = select_device(cfg.device)
    seed_all(cfg.seed)
    root = resolve_data(cfg.data)
    if cfg.mode == "paired":
        dataset = paired_folder(root, "train")
    else:
        domain_a, domain_b = unpaired_folders(root, "train")
    networks = build_networks(cfg, device)  # before the run folder exists, so a bad slice_from leaves nothing behind
    out = Path(cfg.out_dir)
    refuse_output_over_inputs(out, (root, cfg.slice_from))  # the run must not write into the data it reads
    run = RunDirectory(out)
    optimizers = build_optimizers(cfg, networks)
    start, identity = resume_point(cfg, run, networks, optimizers)
    run.write_config(cfg)  # after the resume check: a refused run leaves the finished run's config alone
    sampler = StepSampler(Augmentation(cfg.load_size, cfg.crop_size, cfg.flip), cfg.batch_size, cfg.seed)
    step_function = pix2pix_step if cfg.mode == "paired" else cyclegan_step
    for step in progress(range(start, cfg.steps), f"{cfg.mode} teacher", total=cfg.steps - start):
        seed_step(cfg.seed, step)
        set_lr(optimizers, linear_decay_lr(cfg.lr, step, cfg.steps))
        a, b = sampler.paired(dataset, step) if cfg.mode == "paired" else sampler.unpaired(domain_a, domain_b, step)
        losses = step_function(networks, optimizers, a.to(device), b.to(device), cfg)
        all_finite(losses, f"{cfg.out_dir} step {step}")
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            run.log(step=step, **losses)
        if (step + 1) % cfg.checkpoint_every == 0 or step == cfg.steps - 1:
            save_state(out / "state.pt", step + 1, networks, optimizers, identity)
    export_networks(out, networks, generator_spec(cfg))
    run.plot("step", ["g", "d"] if cfg.mode == "paired" else ["g", "d_a", "d_b"], "losses")
    return out


def export_networks(out: Path, networks: dict, spec: GeneratorSpec) -> None:
    for name, net in networks.items():
        if name.startswith("G"):
            save_generator(out / f"{name}.pt", net, spec)
        else:
            save_discriminator(out / f"{name}.pt", net)
