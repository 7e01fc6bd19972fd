import numpy as np
import pytest

from slimlab.core.errors import SlimlabError
from slimlab.par.synthetic import ATTRIBUTE_NAMES, make_synthetic_pedestrians, sample_attribute_labels


def correlation(labels, first, second):
    a, b = labels[:, ATTRIBUTE_NAMES.index(first)], labels[:, ATTRIBUTE_NAMES.index(second)]
    return float(np.corrcoef(a, b)[0, 1])


def test_generation_is_deterministic_and_shaped():
    first = make_synthetic_pedestrians(40, 20, seed=5)
    second = make_synthetic_pedestrians(40, 20, seed=5)
    assert first.train_images.shape == (40, 64, 32, 3) and first.train_images.dtype == np.uint8
    assert first.test_labels.shape == (20, len(ATTRIBUTE_NAMES))
    assert np.array_equal(first.train_images, second.train_images)
    assert np.array_equal(first.test_labels, second.test_labels)
    assert not np.array_equal(first.train_images, make_synthetic_pedestrians(40, 20, seed=6).train_images)


def test_correlated_model_has_the_designed_correlations():
    labels = sample_attribute_labels(20000, np.random.default_rng(0))
    assert correlation(labels, "long_hair", "female") > 0.6
    assert correlation(labels, "shorts", "coat") < -0.3
    assert correlation(labels, "sunglasses", "short_sleeve") > 0.4   # both follow the season, in other regions
    assert abs(correlation(labels, "logo", "female")) < 0.03


def test_independent_control_keeps_marginals_and_removes_correlation():
    correlated = make_synthetic_pedestrians(2000, 8, variant="correlated", views_per_identity=1, seed=1)
    independent = make_synthetic_pedestrians(2000, 8, variant="independent", views_per_identity=1, seed=1)
    assert np.allclose(correlated.train_labels.mean(0), independent.train_labels.mean(0), atol=0.04)
    assert abs(correlation(independent.train_labels, "long_hair", "female")) < 0.08


def test_identity_disjoint_split_puts_unseen_people_in_test():
    disjoint = make_synthetic_pedestrians(40, 20, views_per_identity=4, seed=2)
    # 40 training views of ceil(40 / 4) = 10 people, view i showing person i % 10; the 20 test views show
    # ceil(20 / 4) = 5 further people, numbered 10..14 after the training ones
    assert disjoint.train_identity.tolist() == [i % 10 for i in range(40)]
    assert disjoint.test_identity.tolist() == [10 + i % 5 for i in range(20)]
    assert not set(disjoint.train_identity.tolist()) & set(disjoint.test_identity.tolist())
    overlapping = make_synthetic_pedestrians(40, 20, views_per_identity=4, identity_disjoint=False, seed=2)
    assert set(overlapping.test_identity.tolist()) <= set(range(10))  # every test view shows a training person
    # the identities are the people the labels were drawn for: all views of one person carry the same labels
    for data in (disjoint, overlapping):
        identities = np.concatenate([data.train_identity, data.test_identity])
        labels = np.concatenate([data.train_labels, data.test_labels])
        for person in np.unique(identities):
            views = labels[identities == person]
            assert (views == views[0]).all(), person
    with pytest.raises(SlimlabError, match="variant"):
        make_synthetic_pedestrians(4, 4, variant="shuffled")
