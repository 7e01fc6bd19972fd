import json

import numpy as np
import pytest
import torch
from PIL import Image

from slimlab.core.errors import SlimlabError
from slimlab.core.image_tasks import (LABEL_CLASSES, LABEL_PALETTE, builtin_task, degrade, edge_map,
                                      labels_from_colours, render_labels, shapes_pair, voronoi_labels)
from slimlab.core.images import list_images, load_image_tensor, read_image, resize, to_uint8, write_image


def test_image_round_trip_grey_conversion_and_errors(tmp_path):
    image = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    write_image(tmp_path / "x.png", image)
    assert np.array_equal(read_image(tmp_path / "x.png"), to_uint8(image))
    Image.fromarray(np.full((4, 5), 200, np.uint8)).save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").shape == (4, 5, 3)
    assert load_image_tensor(tmp_path / "grey.png").shape == (3, 4, 5)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SlimlabError, match="broken.png: not a readable image"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlimlabError, match="empty: no image files"):
        list_images(tmp_path / "empty")
    assert resize(torch.ones(3, 8, 8), 4).shape == (3, 4, 4)


def test_task_pieces():
    flat = np.full((16, 16, 3), 90, np.uint8)
    assert np.array_equal(degrade(flat), flat)            # nothing to lose in a flat image
    assert (edge_map(flat) == 255).all()                  # and no edges in it
    a, b = shapes_pair(np.random.default_rng(0), 32)
    assert a.shape == b.shape == (32, 32, 3)
    changed = (a != b).any(-1)
    assert changed.any() and (a[~changed] == b[~changed]).all()  # only the shapes are restyled


def test_builtin_task_is_generated_once_and_split_by_source(tmp_path):
    root = builtin_task("sr4", tmp_path, size=32, train_per_source=1, test_per_source=1)
    train, test = sorted(p.name for p in (root / "train" / "A").iterdir()), sorted(
        p.name for p in (root / "test" / "B").iterdir())
    assert len(train) == 14 and len(test) == 4
    assert not {n.rsplit("_", 1)[0] for n in train} & {n.rsplit("_", 1)[0] for n in test}
    assert json.loads((root / "task.json").read_text())["task"] == "sr4"
    stamp = (root / "train" / "A" / train[0]).stat().st_mtime_ns
    assert builtin_task("sr4", tmp_path, size=32, train_per_source=1, test_per_source=1) == root
    assert (root / "train" / "A" / train[0]).stat().st_mtime_ns == stamp  # reused, not regenerated
    unpaired = builtin_task("shapes2stripes", tmp_path, size=32, train_per_source=1, test_per_source=1)
    assert len(list((unpaired / "trainA").iterdir())) == 14 and len(list((unpaired / "testB").iterdir())) == 4
    with pytest.raises(SlimlabError, match="unknown built-in task"):
        builtin_task("horse2zebra", tmp_path)


def test_label_scene_pieces():
    labels = voronoi_labels(np.random.default_rng(0), 32, len(LABEL_CLASSES))
    assert labels.shape == (32, 32) and labels.min() >= 0 and labels.max() < len(LABEL_CLASSES)
    coded = LABEL_PALETTE[labels].astype(np.uint8)                      # the A image of the scene
    assert np.array_equal(labels_from_colours(coded), labels)
    noisy = np.clip(coded.astype(int) + np.random.default_rng(1).integers(-20, 21, coded.shape), 0, 255)
    assert np.array_equal(labels_from_colours(noisy), labels)           # palette colours are > 40 apart
    # constant textures: class c renders as the value 10 * (c + 1) everywhere it is present
    textures = [np.full((40, 40, 3), 10.0 * (c + 1)) for c in range(len(LABEL_CLASSES))]
    rendered = render_labels(labels, textures, np.random.default_rng(2))
    assert np.array_equal(rendered[..., 0], 10 * (labels + 1))


def test_builtin_label_task_pairs_label_maps_with_renderings(tmp_path):
    root = builtin_task("labels2texture", tmp_path, size=32, train_per_source=1, test_per_source=1)
    train_a = sorted(p.name for p in (root / "train" / "A").iterdir())
    assert len(train_a) == 14 and len(list((root / "test" / "B").iterdir())) == 4
    assert train_a == sorted(p.name for p in (root / "train" / "B").iterdir())
    label_image = read_image(root / "train" / "A" / train_a[0])
    palette = {tuple(colour) for colour in LABEL_PALETTE}
    assert {tuple(pixel) for pixel in label_image.reshape(-1, 3)} <= palette  # only exact label colours
    rendering = read_image(root / "train" / "B" / train_a[0])
    assert rendering.shape == (32, 32, 3) and rendering.std() > 5              # textured, not flat


@pytest.mark.parametrize("values, expected", [
    ([[0, 4095]], [[0, 255]]),          # 12-bit data: top 8 of its 12 bits
    ([[10, 200]], [[10, 200]]),         # 8-bit values stored in 16 bits: kept as they are
    ([[256, 65535]], [[1, 255]]),       # full 16-bit range: top 8 of 16 bits
])
def test_wide_grey_images_keep_the_top_8_of_the_bits_they_use(tmp_path, values, expected):
    Image.fromarray(np.array(values, dtype=np.uint16)).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (1, 2, 3) and (image == np.array(expected, np.uint8)[..., None]).all()
