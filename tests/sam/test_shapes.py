import numpy as np
import pytest

from slimlab.sam.shapes import KINDS, MIN_VISIBLE_PIXELS, ShapesDataset, draw_shape, make_sample


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_visible_masks_are_disjoint_and_tagged(seed):
    sample = make_sample(seed, 64)
    assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
    assert sample.masks.dtype == bool and len(sample.masks) == len(sample.kinds) == len(sample.tags)
    assert 1 <= len(sample.masks) <= 12
    assert sample.masks.sum(axis=0).max() <= 1  # later shapes occlude earlier ones: visible parts never overlap
    for mask, kind, tags in zip(sample.masks, sample.kinds, sample.tags):
        assert kind in KINDS and mask.sum() >= MIN_VISIBLE_PIXELS
        assert tags <= {"thin", "concave", "occluded", "small"}
        assert ("thin" in tags) == (kind in ("bar", "ring"))
        assert ("concave" in tags) == (kind in ("star", "ring"))
        assert ("small" in tags) == (mask.sum() < 150)


def test_draw_shape_gives_a_filled_mask_for_every_kind():
    rng = np.random.default_rng(0)
    for kind in KINDS:
        mask = draw_shape(kind, rng, 64)
        assert mask.shape == (64, 64) and mask.dtype == bool and mask.any()


def test_splits_are_deterministic_and_disjoint():
    train, again, test = ShapesDataset(3), ShapesDataset(3), ShapesDataset(3, "test")
    assert np.array_equal(train[1].image, again[1].image) and np.array_equal(train[1].masks, again[1].masks)
    assert not np.array_equal(train[0].image, test[0].image)
    assert len(train) == 3
