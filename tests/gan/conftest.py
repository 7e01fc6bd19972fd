import numpy as np
import pytest
import torch
from PIL import Image

from slimlab.gan.checkpoint import save_generator
from slimlab.gan.networks import GeneratorSpec, build_generator


def write_rgb(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


@pytest.fixture
def paired_dir(tmp_path):
    """Four 32x32 pairs in A/ + B/: B is A with its colours inverted."""
    rng = np.random.default_rng(0)
    for index in range(4):
        a = rng.integers(0, 256, (32, 32, 3))
        write_rgb(tmp_path / "pairs" / "A" / f"{index}.png", a)
        write_rgb(tmp_path / "pairs" / "B" / f"{index}.png", 255 - a)
    return tmp_path / "pairs"


@pytest.fixture
def unpaired_dir(tmp_path):
    rng = np.random.default_rng(1)
    for index in range(3):
        write_rgb(tmp_path / "unpaired" / "trainA" / f"{index}.png", rng.integers(0, 128, (32, 32, 3)))
        write_rgb(tmp_path / "unpaired" / "trainB" / f"{index}.png", rng.integers(128, 256, (32, 32, 3)))
    return tmp_path / "unpaired"


@pytest.fixture
def generator_file(tmp_path):
    """A small ResNet generator saved as G.pt (seeded)."""
    spec = GeneratorSpec(ngf=4, n_blocks=1)
    torch.manual_seed(0)
    save_generator(tmp_path / "G.pt", build_generator(spec), spec)
    return tmp_path / "G.pt"
