import json

import cv2
import numpy as np
import pytest

from slimlab.core.errors import SlimlabError
from slimlab.sam.data import FolderDataset, rle_counts_from_string


def test_compressed_rle_decodes_by_hand_and_truncation_is_named():
    # COCO's 5-bit groups, '0' = 48: 10 -> ':' (one group); 54 = 22 + 1 * 32 -> 'f' (22 | sign bit 16 set, so
    # continue flag 32 too) then '1'; 64 = 0 + 2 * 32 -> 'P' (0 | continue) then '2'
    assert rle_counts_from_string(":f1") == [10, 54]
    assert rle_counts_from_string("P2") == [64]
    with pytest.raises(SlimlabError, match="x.json: compressed RLE string ends in the middle of a run length"):
        rle_counts_from_string("P", "x.json")  # 'P' announces a second group that is missing
    with pytest.raises(SlimlabError, match="not part of COCO's compressed RLE alphabet"):
        rle_counts_from_string("P\u00e92")


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((8, 8, 3), 90, np.uint8))
    return images


def coco_file(tmp_path, segmentations) -> str:
    coco = {"images": [{"id": 3, "file_name": "a.png"}],
            "annotations": [{"image_id": 3, "segmentation": s} for s in segmentations]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    return str(path)


GOOD_POLYGON = [[0, 0, 7, 0, 7, 7, 0, 7]]  # the whole 8 x 8 image


@pytest.mark.parametrize("bad, message", [
    ([[0, 0, 7, 0, 7]], "polygon has 5 numbers; it needs an even count of at least 6"),
    ([[0, 0, 7, 7]], "polygon has 4 numbers"),
    ([[0, 0, "7", 0, 7, 7]], "flat list of x, y numbers"),
    ({"size": [8, 8], "counts": "P"}, "compressed RLE string ends in the middle"),
    ({"size": [8, 8], "counts": [70, -6]}, "RLE run lengths must be >= 0, found -6"),
    ({"size": [8, 8], "counts": [10, 50]}, "RLE runs cover 60 pixels but the size 8x8 has 64"),
    ({"counts": [64]}, "RLE 'size' must be"),
])
def test_malformed_coco_annotation_names_file_annotation_and_image(tmp_path, folder, bad, message):
    annotations = coco_file(tmp_path, [GOOD_POLYGON, bad])  # the bad one is annotation 1
    dataset = FolderDataset(folder, 16, annotations)
    with pytest.raises(SlimlabError) as error:
        dataset[0]
    assert str(error.value).startswith(f"{annotations}: annotation 1 (image a.png): ")
    assert message in str(error.value)


def test_good_coco_annotations_still_decode(tmp_path, folder):
    # polygon: the whole image; compressed RLE ":f1" = 10 background then 54 foreground pixels (column-major)
    annotations = coco_file(tmp_path, [GOOD_POLYGON, {"size": [8, 8], "counts": ":f1"}])
    masks = FolderDataset(folder, 8, annotations)[0].masks
    assert masks.shape == (2, 8, 8) and masks[0].all()
    assert masks[1].sum() == 54 and not masks[1][:, 0].any() and not masks[1][:2, 1].any() and masks[1][2:, 1].all()


def test_malformed_sa1b_annotation_names_its_json(folder):
    sa1b = folder / "a.json"
    sa1b.write_text(json.dumps({"annotations": [{"segmentation": {"size": [8, 8], "counts": "P2"}},
                                                {"segmentation": {"size": [8, 8], "counts": ":f"}}]}))
    with pytest.raises(SlimlabError, match=r"a.json: annotation 1 \(image a.png\): compressed RLE string ends"):
        FolderDataset(folder, 16)[0]


def test_image_too_elongated_for_the_model_is_named(tmp_path):
    images = tmp_path / "wide"
    images.mkdir()
    cv2.imwrite(str(images / "strip.png"), np.zeros((8, 3000, 3), np.uint8))
    with pytest.raises(SlimlabError, match=r"strip.png: image is 3000x8 pixels"):
        FolderDataset(images, 128)[0]  # 8 * 128 / 3000 = 0.34 rounds to 0 rows
