import pytest
import torch

from slimlab.core.masked import lower_median, scatter, select
from slimlab.core.quant import assign_nearest


def test_select_keeps_flat_order():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert select(values, mask).tolist() == [1.0, 3.0, 6.0]


def test_select_matches_torch_indexing_on_views_and_bfloat16():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(64, 32, generator=generator)
    view = base.t()                                   # not contiguous
    mask = view.abs() > 0.7
    assert torch.equal(select(view, mask), view[mask])
    half = base.to(torch.bfloat16)                    # NumPy has no bfloat16: torch's kernel runs
    assert torch.equal(select(half, half.abs() > 0.7), half[half.abs() > 0.7])


def test_scatter_writes_the_masked_positions_in_order():
    target = torch.zeros(5)
    scatter(target, torch.tensor([False, True, False, True, True]), torch.tensor([7.0, 8.0, 9.0]))
    assert target.tolist() == [0.0, 7.0, 0.0, 8.0, 9.0]
    flags = torch.zeros(4, dtype=torch.bool)
    scatter(flags, torch.tensor([True, True, False, True]), torch.tensor([True, False, True]))
    assert flags.tolist() == [True, False, False, True]


def test_scatter_rejects_a_count_mismatch():
    with pytest.raises(ValueError, match="selects 2 positions but 3 values"):
        scatter(torch.zeros(3), torch.tensor([True, True, False]), torch.ones(3))


def test_lower_median_by_hand():
    # sorted [1, 2, 3, 4]: element (4 - 1) // 2 = 1 is 2, torch.median's convention
    assert lower_median(torch.tensor([3.0, 1.0, 4.0, 2.0])) == 2.0
    assert lower_median(torch.tensor([5.0, -1.0, 0.5])) == 0.5
    assert lower_median(torch.zeros(0)) == 0.0
    values = torch.randn(1001, generator=torch.Generator().manual_seed(1))
    assert lower_median(values) == float(values.median())


def test_assign_nearest_matches_bucketize():
    generator = torch.Generator().manual_seed(2)
    codebook = torch.sort(torch.randn(15, generator=generator)).values
    values = torch.cat([torch.randn(10_000, generator=generator), (codebook[1:] + codebook[:-1]) / 2])
    expected = torch.bucketize(values, (codebook[1:] + codebook[:-1]) / 2, right=False)
    assert torch.equal(assign_nearest(values, codebook), expected)
