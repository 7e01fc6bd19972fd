"""Training resumed from compressed checkpoints stays close to uncompressed training."""

import torch

from slimlab.ckpt import ExcpCodec, load_compressed, save_compressed

from .conftest import batch, make_model_and_optimizer, train


def held_out_loss(model):
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        tokens, targets = batch(generator, size=512)
        return torch.nn.functional.cross_entropy(model(tokens), targets).item()


def test_resume_from_compressed_stays_within_tolerance(tmp_path):
    # Uncompressed run: 6 checkpoints of 25 steps.
    model, optimizer = make_model_and_optimizer()
    train(model, optimizer, 150, torch.Generator().manual_seed(7))
    reference_loss = held_out_loss(model)

    # Same data order; every 2nd checkpoint the run continues from the decoded compressed checkpoint.
    model, optimizer = make_model_and_optimizer()
    generator = torch.Generator().manual_seed(7)
    codec = ExcpCodec(keyframe_every=10)
    for segment in range(1, 7):
        train(model, optimizer, 25, generator)
        save_compressed(model, optimizer, tmp_path / "chain", segment * 25, codec)
        if segment % 2 == 0:
            stats = {}
            model, optimizer = make_model_and_optimizer(seed=99)  # fresh objects: everything comes from the file
            assert load_compressed(model, optimizer, tmp_path / "chain", stats=stats) == segment * 25
            assert stats["orphaned_first_moments"] == 0
            assert optimizer.state_dict()["state"][0]["step"].item() == segment * 25  # exact step count
    resumed_loss = held_out_loss(model)
    # Stated tolerance: 2% of the loss (the benchmark measures the 0.01-nat target on a real LM).
    assert abs(resumed_loss - reference_loss) < 0.02 * reference_loss, (resumed_loss, reference_loss)
    assert resumed_loss < 3.3  # and it did learn (log 37 = 3.61 at start, floor ~2.1)
