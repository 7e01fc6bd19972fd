import torch

from slimlab.core.quant import assign_nearest, kmeans_codebook, quantize, uniform_codebook


def test_two_point_masses_give_exact_centroids():
    values = torch.tensor([-1.0] * 300 + [2.0] * 100)
    codebook = kmeans_codebook(values, 15)
    assert torch.equal(codebook, torch.tensor([-1.0, 2.0]))


def test_kmeans_beats_uniform_on_gaussian():
    torch.manual_seed(0)
    values = torch.randn(100_000)
    k_indices, k_codebook = quantize(values, 15, "kmeans")
    u_indices, u_codebook = quantize(values, 15, "uniform")
    k_error = torch.mean((k_codebook[k_indices] - values) ** 2)
    u_error = torch.mean((u_codebook[u_indices] - values) ** 2)
    assert k_codebook.numel() <= 15 and torch.all(k_codebook[1:] > k_codebook[:-1])
    # Lloyd-Max optimum for 15 levels on N(0,1) is ~0.0095 (Max 1960); uniform over the sample range is worse.
    assert k_error < 0.0115
    assert k_error < u_error


def test_assign_nearest_ties_go_low():
    codebook = torch.tensor([0.0, 1.0, 3.0])
    values = torch.tensor([0.5, 0.49, 0.51, 2.0, 2.1, 10.0, -5.0])
    assert assign_nearest(values, codebook).tolist() == [0, 0, 1, 1, 2, 2, 0]


def test_uniform_levels_by_hand():
    assert torch.allclose(uniform_codebook(torch.tensor([0.0, 4.0, 1.0]), 5), torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))
