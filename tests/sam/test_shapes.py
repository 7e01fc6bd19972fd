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


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_annotated_background_keeps_the_instances_and_covers_the_image(seed):
    plain, annotated = make_sample(seed, 64), make_sample(seed, 64, annotate_background=True)
    count = len(plain.masks)
    # the same instances, then 1-4 background regions (a region can be hidden by shapes or split by them)
    assert np.array_equal(annotated.masks[:count], plain.masks) and annotated.kinds[:count] == plain.kinds
    regions = annotated.masks[count:]
    assert 1 <= len(regions) <= 4
    assert annotated.kinds[count:] == ["background"] * len(regions)
    assert all(tags == {"stuff"} for tags in annotated.tags[count:])
    assert annotated.masks.sum(axis=0).max() <= 1  # one mask per pixel
    assert all(mask.sum() >= MIN_VISIBLE_PIXELS for mask in regions)
    # every pixel is in a mask but for fragments of shapes too small to keep (at most 12 shapes)
    assert (~annotated.masks.any(axis=0)).sum() < MIN_VISIBLE_PIXELS * 12
    # the regions come from their own random stream: instance pixels (noise included) are exactly the plain ones
    inside = plain.masks.any(axis=0)
    assert np.array_equal(annotated.image[inside], plain.image[inside])
    assert not np.array_equal(annotated.image[~inside], plain.image[~inside])


def test_annotated_background_regions_differ_in_colour():
    for seed in range(5):
        sample = make_sample(seed, 64, annotate_background=True)
        regions = [mask for mask, kind in zip(sample.masks, sample.kinds) if kind == "background"]
        means = [sample.image[mask].mean(axis=0) for mask in regions if mask.sum() > 200]
        for i in range(len(means)):
            for j in range(i):
                assert np.linalg.norm(means[i] - means[j]) > 20
