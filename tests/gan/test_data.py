import numpy as np
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.gan.data import Augmentation, PairedImageFolder, StepSampler, unpaired_folders
from tests.gan.conftest import write_rgb


def test_pairs_match_by_name_and_augmentation_keeps_them_aligned(paired_dir):
    dataset = PairedImageFolder(paired_dir)
    assert dataset.names() == ["0.png", "1.png", "2.png", "3.png"]
    a, b = dataset.example(2)
    assert torch.allclose(a, -b, atol=1e-6)  # B = 255 - A  <=>  b = -a on [-1, 1]
    sampler = StepSampler(Augmentation(load_size=40, crop_size=32), batch_size=3, seed=0)
    batch_a, batch_b = sampler.paired(dataset, step=5)
    assert batch_a.shape == batch_b.shape == (3, 3, 32, 32)
    assert torch.allclose(batch_a, -batch_b, atol=1e-5)  # same crop and flip applied to both sides
    again_a, _ = sampler.paired(dataset, step=5)
    assert torch.equal(batch_a, again_a) and not torch.equal(batch_a, sampler.paired(dataset, step=6)[0])


def test_side_by_side_layout_splits_in_half(tmp_path):
    left, right = np.zeros((8, 8, 3)), np.full((8, 8, 3), 255)
    write_rgb(tmp_path / "ab" / "x.jpg", np.concatenate([left, right], 1))
    a, b = PairedImageFolder(tmp_path / "ab").example(0)
    assert a.shape == b.shape == (3, 8, 8) and a.max() < -0.9 and b.min() > 0.9


def test_unpaired_domains(unpaired_dir):
    domain_a, domain_b = unpaired_folders(unpaired_dir)
    a, b = StepSampler(Augmentation(36, 32), 2, seed=1).unpaired(domain_a, domain_b, 0)
    assert a.shape == b.shape == (2, 3, 32, 32) and a.mean() < b.mean()


def test_bad_folders_are_named(tmp_path, paired_dir):
    write_rgb(tmp_path / "sizes" / "A" / "p.png", np.zeros((8, 8, 3)))
    write_rgb(tmp_path / "sizes" / "B" / "p.png", np.zeros((8, 10, 3)))
    with pytest.raises(SlimlabError, match=r"A/p.png is \(8, 8\).*B/p.png is \(10, 8\)"):
        PairedImageFolder(tmp_path / "sizes")
    write_rgb(paired_dir / "B" / "extra.png", np.zeros((32, 32, 3)))
    with pytest.raises(SlimlabError, match="without a partner.*extra.png"):
        PairedImageFolder(paired_dir)
    (tmp_path / "bad" / "A").mkdir(parents=True)
    (tmp_path / "bad" / "B").mkdir(parents=True)
    (tmp_path / "bad" / "A" / "q.png").write_bytes(b"garbage")
    (tmp_path / "bad" / "B" / "q.png").write_bytes(b"garbage")
    with pytest.raises(SlimlabError, match="q.png: not a readable image"):
        PairedImageFolder(tmp_path / "bad")
    (tmp_path / "empty" / "trainA").mkdir(parents=True)
    with pytest.raises(SlimlabError, match="trainA: no image files"):
        unpaired_folders(tmp_path / "empty")
    write_rgb(tmp_path / "odd" / "x.png", np.zeros((8, 9, 3)))
    with pytest.raises(SlimlabError, match="x.png: side-by-side A|B image has odd width 9"):
        PairedImageFolder(tmp_path / "odd")


def test_truncated_jpeg_is_found_before_training(tmp_path, unpaired_dir):
    from PIL import Image

    from slimlab.core.config import load_config
    from slimlab.gan.config import TeacherConfig
    from slimlab.gan.recipes.teacher import train_teacher

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(noise).save(unpaired_dir / "trainA" / "cut.jpg", quality=90)
    whole = (unpaired_dir / "trainA" / "cut.jpg").read_bytes()
    (unpaired_dir / "trainA" / "cut.jpg").write_bytes(whole[:len(whole) // 2])  # the header still reads fine
    with pytest.raises(SlimlabError, match="cut.jpg: not a readable image"):
        unpaired_folders(unpaired_dir)
    cfg = load_config(TeacherConfig, data=str(unpaired_dir), mode="unpaired", out_dir=str(tmp_path / "run"), steps=2,
                      ngf=4, n_blocks=1, ndf=4, batch_size=2, load_size=36, crop_size=32, device="cpu")
    with pytest.raises(SlimlabError, match="cut.jpg: not a readable image"):
        train_teacher(cfg)
    assert not (tmp_path / "run").exists()  # no state.pt from a run that would have failed mid-training
