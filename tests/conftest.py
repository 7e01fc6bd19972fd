import os

import pytest
import torch

os.environ.setdefault("SLIMLAB_QUIET", "1")
# Two cores in CI: keep torch from oversubscribing when pytest runs subprocesses too.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
