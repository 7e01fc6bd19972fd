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


def test_python_and_numpy_lloyd_give_identical_codebooks(monkeypatch):
    import slimlab.core.quant as quant

    generator = torch.Generator().manual_seed(3)
    cases = [torch.randn(n, generator=generator) ** power for n in (300, 5000, 70_000) for power in (1, 3)]
    for clusters in (3, 15, 31):
        monkeypatch.setattr(quant, "_PYTHON_LLOYD_MAX", 0)
        with_numpy = [quant.kmeans_codebook(values, clusters) for values in cases]
        monkeypatch.setattr(quant, "_PYTHON_LLOYD_MAX", 1_000)
        with_python = [quant.kmeans_codebook(values, clusters) for values in cases]
        assert all(torch.equal(a, b) for a, b in zip(with_numpy, with_python))


def test_assign_nearest_matches_bucketize():
    generator = torch.Generator().manual_seed(4)
    values = torch.randn(10_000, generator=generator)
    codebook = torch.sort(torch.randn(15, generator=generator)).values
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    values[:14] = midpoints  # exact ties go to the lower index
    expected = torch.bucketize(values, midpoints, right=False).long()
    assert torch.equal(assign_nearest(values, codebook), expected)
