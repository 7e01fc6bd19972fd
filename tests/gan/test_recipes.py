import json

import pytest
import torch

from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError
from slimlab.gan import training
from slimlab.gan.checkpoint import load_generator, save_discriminator, save_generator
from slimlab.gan.config import DistillConfig, TeacherConfig
from slimlab.gan.data import Augmentation, PairedImageFolder, StepSampler, unpaired_folders
from slimlab.gan.recipes.distill import build_directions, distill_step
from slimlab.gan.recipes.teacher import (build_networks, build_optimizers, cyclegan_step, generator_spec,
                                         pix2pix_step, train_teacher)

TINY = dict(ngf=4, n_blocks=1, ndf=4, batch_size=2, load_size=36, crop_size=32, device="cpu", log_every=1)


def snapshot(networks):
    return {f"{name}.{key}": p.detach().clone() for name, net in networks.items() for key, p in net.named_parameters()}


def assert_all_changed(before, networks):
    after = snapshot(networks)
    unchanged = [key for key in before if torch.equal(before[key], after[key])]
    assert not unchanged, f"parameters not updated: {unchanged}"


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_one_teacher_step_changes_every_parameter(mode, paired_dir, unpaired_dir):
    cfg = load_config(TeacherConfig, data=str(paired_dir if mode == "paired" else unpaired_dir), mode=mode, **TINY)
    networks = build_networks(cfg, torch.device("cpu"))
    optimizers = build_optimizers(cfg, networks)
    sampler = StepSampler(Augmentation(36, 32), 2, 0)
    if mode == "paired":
        a, b = sampler.paired(PairedImageFolder(paired_dir), 0)
    else:
        a, b = sampler.unpaired(*unpaired_folders(unpaired_dir), 0)
    before = snapshot(networks)
    losses = (pix2pix_step if mode == "paired" else cyclegan_step)(networks, optimizers, a, b, cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert_all_changed(before, networks)


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_one_distill_step_changes_every_student_parameter(mode, tmp_path, paired_dir, unpaired_dir):
    teacher_cfg = load_config(TeacherConfig, data="unused", mode=mode, **{**TINY, "ngf": 8})
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    for name, net in teachers.items():
        (save_generator(tmp_path / f"{name}.pt", net, generator_spec(teacher_cfg)) if name.startswith("G")
         else save_discriminator(tmp_path / f"{name}.pt", net))
    cfg = load_config(DistillConfig, data="unused", mode=mode, ratio=0.5, lambda_cycle=1.0 if mode == "unpaired" else 0.0,
                      teacher=str(tmp_path / ("G.pt" if mode == "paired" else "G_AB.pt")),
                      **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    directions = build_directions(cfg, torch.device("cpu"))
    assert directions[0].student_spec.ngf == 4 and directions[0].student_d.ndf == 4
    networks = {f"S{d.name}": d.student for d in directions} | {f"D{d.name}": d.student_d for d in directions}
    optimizers = {"G": training.adam([p for d in directions for p in d.student.parameters()], 2e-4, 0.5),
                  "D": training.adam([p for d in directions for p in d.student_d.parameters()], 2e-4, 0.5)}
    teacher_before = {k: v.clone() for k, v in directions[0].teacher.state_dict().items()}
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    batches = {"AB": (x, y), "BA": (y, x)}
    before = snapshot(networks)
    logs = distill_step(directions, optimizers, batches, cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert {"AB_pix", "AB_feat", "AB_g_gan", "AB_tri", "AB_d_real_teacher"} <= set(logs)
    assert_all_changed(before, networks)
    assert all(torch.equal(teacher_before[k], v) for k, v in directions[0].teacher.state_dict().items())


def test_resume_reproduces_the_logged_losses(tmp_path, paired_dir, monkeypatch):
    common = dict(data=str(paired_dir), steps=4, checkpoint_every=2, **TINY)
    train_teacher(load_config(TeacherConfig, out_dir=str(tmp_path / "straight"), **common))
    original_seed_step = training.seed_step

    def crash_at_step_3(seed, step):
        if step == 3:
            raise KeyboardInterrupt
        original_seed_step(seed, step)

    monkeypatch.setattr("slimlab.gan.recipes.teacher.seed_step", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(load_config(TeacherConfig, out_dir=str(tmp_path / "resumed"), **common))
    assert not (tmp_path / "resumed" / "G.pt").exists()  # nothing final written by the interrupted run
    monkeypatch.setattr("slimlab.gan.recipes.teacher.seed_step", original_seed_step)
    train_teacher(load_config(TeacherConfig, out_dir=str(tmp_path / "resumed"), **common))
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("straight", "resumed")]
    assert [r["step"] for r in rows[1]] == [0, 1, 2, 3]  # step 2 was logged twice; the stale row was dropped
    assert rows[0] == rows[1]
    straight, _ = load_generator(tmp_path / "straight" / "G.pt")
    resumed, _ = load_generator(tmp_path / "resumed" / "G.pt")
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    train_teacher(load_config(TeacherConfig, out_dir=str(tmp_path / "resumed"), **{**common, "resume": False}))
    fresh = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert fresh == rows[0]  # started afresh: the old log is replaced, not appended to


def test_slice_from_starts_g_from_the_wider_generators_leading_filters(tmp_path, paired_dir):
    wide_cfg = load_config(TeacherConfig, data=str(paired_dir), **{**TINY, "ngf": 8})
    wide = build_networks(wide_cfg, torch.device("cpu"))["G"]
    save_generator(tmp_path / "wide.pt", wide, generator_spec(wide_cfg))
    cfg = load_config(TeacherConfig, data=str(paired_dir), slice_from=str(tmp_path / "wide.pt"), **TINY)
    thin = build_networks(cfg, torch.device("cpu"))["G"]
    wide_state = wide.state_dict()
    for name, tensor in thin.state_dict().items():
        leading = wide_state[name][tuple(slice(0, n) for n in tensor.shape)]
        assert torch.equal(tensor, leading), name
    # a width-4 copy of an 8-wide first conv keeps 4 of its 8 output filters
    assert thin.state_dict()[next(iter(thin.state_dict()))].shape[0] * 2 == wide_state[next(iter(wide_state))].shape[0]


def test_slice_from_refuses_a_mismatched_generator(tmp_path, paired_dir, unpaired_dir):
    deep_cfg = load_config(TeacherConfig, data=str(paired_dir), **{**TINY, "ngf": 8, "n_blocks": 2})
    save_generator(tmp_path / "deep.pt", build_networks(deep_cfg, torch.device("cpu"))["G"], generator_spec(deep_cfg))
    narrow_cfg = load_config(TeacherConfig, data=str(paired_dir), **{**TINY, "ngf": 2})
    save_generator(tmp_path / "narrow.pt", build_networks(narrow_cfg, torch.device("cpu"))["G"],
                   generator_spec(narrow_cfg))
    skip_cfg = load_config(TeacherConfig, data=str(paired_dir), **{**TINY, "ngf": 8}, global_skip=True)
    save_generator(tmp_path / "skip.pt", build_networks(skip_cfg, torch.device("cpu"))["G"], generator_spec(skip_cfg))
    cases = [("deep.pt", "paired", "n_blocks is 2"), ("narrow.pt", "paired", "ngf 2 is narrower"),
             ("skip.pt", "paired", "global_skip is True, this run's is False"),
             ("narrow.pt", "unpaired", "only for mode=paired")]
    for name, mode, message in cases:
        cfg = load_config(TeacherConfig, data="unused", mode=mode, slice_from=str(tmp_path / name), **TINY)
        with pytest.raises(SlimlabError, match=message):
            build_networks(cfg, torch.device("cpu"))


def test_bad_slice_from_leaves_no_run_folder(tmp_path, paired_dir):
    cfg = load_config(TeacherConfig, data=str(paired_dir), out_dir=str(tmp_path / "run"),
                      slice_from=str(tmp_path / "missing.pt"), steps=1, **TINY)
    with pytest.raises(SlimlabError, match="missing.pt"):
        train_teacher(cfg)
    assert not (tmp_path / "run").exists()


def test_distill_refuses_a_crop_the_teachers_unet_cannot_take(tmp_path, paired_dir):
    from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, build_generator
    from slimlab.gan.recipes.distill import distill

    spec = GeneratorSpec(kind="unet", ngf=2, num_downs=5)  # sides must divide by 2**5 = 32
    save_generator(tmp_path / "G.pt", build_generator(spec), spec)
    save_discriminator(tmp_path / "D.pt", PatchDiscriminator(6, 4))
    cfg = load_config(DistillConfig, data=str(paired_dir), teacher=str(tmp_path / "G.pt"), out_dir=str(tmp_path / "s"),
                      ratio=0.5, steps=1, batch_size=2, load_size=48, crop_size=48, device="cpu")
    with pytest.raises(SlimlabError, match="'crop_size' must be a multiple of 32 for the teacher's unet generator"):
        distill(cfg)
    assert not (tmp_path / "s").exists()


def test_a_global_skip_teacher_gives_a_global_skip_student(tmp_path):
    teacher_cfg = load_config(TeacherConfig, data="unused", **{**TINY, "ngf": 8}, global_skip=True)
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    assert teachers["G"].global_skip
    save_generator(tmp_path / "G.pt", teachers["G"], generator_spec(teacher_cfg))
    save_discriminator(tmp_path / "D.pt", teachers["D"])
    cfg = load_config(DistillConfig, data="unused", ratio=0.5, teacher=str(tmp_path / "G.pt"),
                      **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    (direction,) = build_directions(cfg, torch.device("cpu"))
    assert direction.student_spec.global_skip and direction.student.global_skip and direction.student_spec.ngf == 4


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_one_gan_compression_step_trains_student_adapters_and_the_d_started_from_the_teachers(mode, tmp_path):
    teacher_cfg = load_config(TeacherConfig, data="unused", mode=mode, **{**TINY, "ngf": 8, "n_blocks": 3})
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    for name, net in teachers.items():
        (save_generator(tmp_path / f"{name}.pt", net, generator_spec(teacher_cfg)) if name.startswith("G")
         else save_discriminator(tmp_path / f"{name}.pt", net))
    cfg = load_config(DistillConfig, data="unused", mode=mode, ratio=0.5, method="gan_compression", lambda_pix=100.0,
                      teacher=str(tmp_path / ("G.pt" if mode == "paired" else "G_AB.pt")),
                      **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    directions = build_directions(cfg, torch.device("cpu"))
    first = directions[0]
    assert first.layers == (9, 12) and len(first.adapters) == 2
    assert first.adapters[0].weight.shape == (32, 16, 1, 1)  # student 4 x 4 channels -> teacher 4 x 8
    teacher_d = teachers["D" if mode == "paired" else "D_B"]
    assert all(torch.equal(a, b) for a, b in zip(first.student_d.state_dict().values(), teacher_d.state_dict().values()))
    networks = ({f"S{d.name}": d.student for d in directions} | {f"D{d.name}": d.student_d for d in directions}
                | {f"A{d.name}": d.adapters for d in directions})
    optimizers = {"G": training.adam([p for d in directions for p in [*d.student.parameters(), *d.adapters.parameters()]],
                                     2e-4, 0.5),
                  "D": training.adam([p for d in directions for p in d.student_d.parameters()], 2e-4, 0.5)}
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # paired: reconstruction against the ground truth; unpaired: the teacher's output
        expected_pix = (first.student(x) - (y if mode == "paired" else first.teacher(x))).abs().mean().item()
    before = snapshot(networks)
    logs = distill_step(directions, optimizers, {"AB": (x, y), "BA": (y, x)}, cfg)
    assert logs["AB_pix"] == pytest.approx(expected_pix, rel=1e-5)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert {"AB_pix", "AB_distill", "AB_g_gan", "AB_d_real_y", "AB_d_fake"} <= set(logs)
    assert "AB_feat" not in logs and "AB_tri" not in logs
    assert_all_changed(before, networks)


def test_gan_compression_refuses_a_unet_teacher_by_name(tmp_path):
    teacher_cfg = load_config(TeacherConfig, data="unused", generator="unet", num_downs=5, **TINY)
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    save_generator(tmp_path / "G.pt", teachers["G"], generator_spec(teacher_cfg))
    save_discriminator(tmp_path / "D.pt", teachers["D"])
    cfg = load_config(DistillConfig, data="unused", method="gan_compression", teacher=str(tmp_path / "G.pt"),
                      **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    with pytest.raises(SlimlabError, match=r"method=gan_compression .*G\.pt is a unet generator"):
        build_directions(cfg, torch.device("cpu"))


def test_gan_compression_resume_restores_the_adapters_and_reproduces_the_run(tmp_path, paired_dir, monkeypatch):
    from slimlab.gan.recipes import distill as distill_module
    teacher_dir = tmp_path / "teacher"
    train_teacher(load_config(TeacherConfig, data=str(paired_dir), out_dir=str(teacher_dir), steps=1,
                              **{**TINY, "ngf": 8}))
    common = dict(data=str(paired_dir), teacher=str(teacher_dir / "G.pt"), method="gan_compression", ratio=0.5,
                  steps=4, checkpoint_every=2, **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    distill_module.distill(load_config(DistillConfig, out_dir=str(tmp_path / "straight"), **common))
    original_seed_step = training.seed_step

    def crash_at_step_3(seed, step):
        if step == 3:
            raise KeyboardInterrupt
        original_seed_step(seed, step)

    monkeypatch.setattr(distill_module, "seed_step", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        distill_module.distill(load_config(DistillConfig, out_dir=str(tmp_path / "resumed"), **common))
    monkeypatch.setattr(distill_module, "seed_step", original_seed_step)
    distill_module.distill(load_config(DistillConfig, out_dir=str(tmp_path / "resumed"), **common))
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("straight", "resumed")]
    assert rows[0] == rows[1] and "AB_distill" in rows[0][-1]  # the step-3 loss needs the adapters as trained


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_student_d_init_teacher_starts_each_student_d_as_a_copy_of_its_teacher_d(mode, tmp_path):
    teacher_cfg = load_config(TeacherConfig, data="unused", mode=mode, **TINY)
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    for name, net in teachers.items():
        (save_generator(tmp_path / f"{name}.pt", net, generator_spec(teacher_cfg)) if name.startswith("G")
         else save_discriminator(tmp_path / f"{name}.pt", net))
    cfg = load_config(DistillConfig, data="unused", mode=mode, ratio=0.5, student_d_init="teacher",
                      teacher=str(tmp_path / ("G.pt" if mode == "paired" else "G_AB.pt")),
                      **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    directions = build_directions(cfg, torch.device("cpu"))
    # each direction's D_S judges that direction's outputs: A -> B (and paired) the teacher's D_B / D, B -> A D_A
    expected = {"AB": teachers["D" if mode == "paired" else "D_B"], "BA": teachers.get("D_A")}
    for direction in directions:
        teacher_d = expected[direction.name]
        assert all(torch.equal(a, b) for a, b in zip(direction.student_d.state_dict().values(),
                                                      teacher_d.state_dict().values(), strict=True))
        assert direction.student_d is not direction.features  # a copy: training D_S leaves the feature network alone
    networks = {f"D{d.name}": d.student_d for d in directions}
    optimizers = {"G": training.adam([p for d in directions for p in d.student.parameters()], 2e-4, 0.5),
                  "D": training.adam([p for d in directions for p in d.student_d.parameters()], 2e-4, 0.5)}
    frozen = {k: v.clone() for k, v in directions[0].features.state_dict().items()}
    before = snapshot(networks)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    distill_step(directions, optimizers, {"AB": (x, y), "BA": (y, x)}, cfg)
    assert_all_changed(before, networks)
    assert all(torch.equal(frozen[k], v) for k, v in directions[0].features.state_dict().items())


def test_student_d_init_teacher_refuses_another_width_by_name(tmp_path):
    teacher_cfg = load_config(TeacherConfig, data="unused", **TINY)
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    save_generator(tmp_path / "G.pt", teachers["G"], generator_spec(teacher_cfg))
    save_discriminator(tmp_path / "D.pt", teachers["D"])
    cfg = load_config(DistillConfig, data="unused", student_d_init="teacher", teacher=str(tmp_path / "G.pt"),
                      ndf=2 * TINY["ndf"], **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    with pytest.raises(SlimlabError, match=r"student_d_init=teacher copies .*D\.pt .*'ndf'"):
        build_directions(cfg, torch.device("cpu"))


def test_finished_run_is_a_state_of_the_same_identity_at_exactly_the_asked_steps(tmp_path, paired_dir):
    common = dict(data=str(paired_dir), out_dir=str(tmp_path / "run"), checkpoint_every=1, **TINY)
    cfg = load_config(TeacherConfig, steps=2, **common)
    assert not training.finished_run(cfg)  # no state yet
    train_teacher(cfg)
    trained = load_generator(tmp_path / "run" / "G.pt")[0].state_dict()
    assert training.finished_run(cfg)
    assert training.finished_run(load_config(TeacherConfig, steps=2, **{**common, "log_every": 5}))  # logging only
    assert not training.finished_run(load_config(TeacherConfig, steps=3, **common))  # longer: not finished
    assert not training.finished_run(load_config(TeacherConfig, steps=1, **common))  # shorter: another run
    assert not training.finished_run(load_config(TeacherConfig, steps=2, **{**common, "seed": 1}))
    train_teacher(load_config(TeacherConfig, steps=2, resume=True, **common))  # resuming it trains nothing
    again = load_generator(tmp_path / "run" / "G.pt")[0].state_dict()
    assert all(torch.equal(a, b) for a, b in zip(trained.values(), again.values(), strict=True))
    (tmp_path / "run" / "state.pt").write_bytes(b"not a state")
    assert not training.finished_run(cfg)


def test_a_state_stored_before_student_d_init_existed_resumes_as_scratch_and_refuses_teacher(tmp_path):
    teacher_cfg = load_config(TeacherConfig, data="unused", **TINY)
    teachers = build_networks(teacher_cfg, torch.device("cpu"))
    save_generator(tmp_path / "G.pt", teachers["G"], generator_spec(teacher_cfg))
    save_discriminator(tmp_path / "D.pt", teachers["D"])
    common = dict(data="unused", teacher=str(tmp_path / "G.pt"), out_dir=str(tmp_path / "student"), steps=3,
                  **{k: v for k, v in TINY.items() if k not in ("ngf", "n_blocks", "ndf")})
    cfg = load_config(DistillConfig, **common)
    older = {k: v for k, v in training.run_identity(cfg).items() if k != "student_d_init"}  # as stored before
    (tmp_path / "student").mkdir()
    training.save_state(tmp_path / "student" / "state.pt", 3, {}, {}, older)
    assert training.finished_run(cfg)  # it was trained with a scratch student D, today's default
    assert training.load_state(tmp_path / "student" / "state.pt", {}, {}, training.run_identity(cfg),
                               training.added_fields(cfg)) == 3
    teacher_start = load_config(DistillConfig, student_d_init="teacher", **common)
    assert not training.finished_run(teacher_start)
    with pytest.raises(SlimlabError, match=r"student_d_init: 'scratch' there, 'teacher' now"):
        training.load_state(tmp_path / "student" / "state.pt", {}, {}, training.run_identity(teacher_start),
                            training.added_fields(teacher_start))
