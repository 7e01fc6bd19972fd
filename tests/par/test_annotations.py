"""Loaders on tiny annotation files written here in each toolbox layout, and their errors on broken files."""

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.io

from slimlab.core.errors import SlimlabError
from slimlab.par.annotations import PETA_EVALUATED_ATTRIBUTES, load_annotations


def cell(strings):
    """A MATLAB cell column of strings, as the released files store names."""
    column = np.empty((len(strings), 1), dtype=object)
    for i, text in enumerate(strings):
        column[i, 0] = np.array([text])
    return column


def write_pa100k(folder, train_label=None):
    attributes = ["Female", "Hat", "Backpack"]
    train_label = np.array([[1, 0, 1], [0, 1, 0]]) if train_label is None else train_label
    scipy.io.savemat(folder / "annotation.mat", {
        "attributes": cell(attributes),
        "train_images_name": cell(["000001.jpg", "000002.jpg"]), "train_label": train_label,
        "val_images_name": cell(["000003.jpg"]), "val_label": np.array([[1, 1, 1]]),
        "test_images_name": cell(["000004.jpg", "000005.jpg"]), "test_label": np.array([[0, 0, 1], [1, 0, 0]])})
    return folder / "annotation.mat"


def test_pa100k_annotation_mat(tmp_path):
    (tmp_path / "data").mkdir()
    data = load_annotations("pa100k", write_pa100k(tmp_path))
    assert data.attribute_names == ("Female", "Hat", "Backpack")
    assert data.labels.tolist() == [[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]]
    assert data.train_indices.tolist() == [0, 1, 2] and data.test_indices.tolist() == [3, 4]  # train = train + val
    assert data.image_paths[3] == tmp_path / "data" / "000004.jpg"


def test_rap_v2_struct_with_selected_attributes_and_uncertain_labels(tmp_path):
    partition = np.empty((2, 1), dtype=object)
    partition[0, 0] = {"train_index": np.array([[1, 2]]), "val_index": np.array([[3]]), "test_index": np.array([[4]])}
    partition[1, 0] = {"train_index": np.array([[4, 3]]), "val_index": np.array([[2]]), "test_index": np.array([[1]])}
    scipy.io.savemat(tmp_path / "RAP_annotation.mat", {"RAP_annotation": {
        "name": cell(["a.png", "b.png", "c.png", "d.png"]), "attribute": cell(["Female", "Hat", "ID", "Shoes"]),
        "data": np.array([[1, 0, 7, 2], [0, 1, 8, 1], [1, 1, 9, 0], [0, 2, 5, 1]]),
        "selected_attribute": np.array([[1, 2, 4]]), "partition_attribute": partition}})
    data = load_annotations("rap", tmp_path / "RAP_annotation.mat", partition=1)
    assert data.attribute_names == ("Female", "Hat", "Shoes")
    assert data.labels.tolist() == [[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]]  # 2 (uncertain) -> 0
    assert sorted(data.train_indices.tolist()) == [1, 2, 3] and data.test_indices.tolist() == [0]


def test_rap_v1_struct_fields(tmp_path):
    partition = np.empty((1, 1), dtype=object)
    partition[0, 0] = {"train_index": np.array([[2]]), "test_index": np.array([[1]])}
    scipy.io.savemat(tmp_path / "RAP_annotation.mat", {"RAP_annotation": {
        "partion": partition, "data": np.array([[1, 0], [0, 1]]), "attribute_eng": cell(["Female", "Hat"]),
        "imagesname": cell(["x.png", "y.png"])}})
    data = load_annotations("rap", tmp_path)
    assert data.labels.tolist() == [[1, 0], [0, 1]] and data.train_indices.tolist() == [1]


def test_peta_mat_keeps_35_evaluated_attributes(tmp_path):
    names = [f"attr{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (3, 40))
    partition = np.empty((1, 1), dtype=object)
    partition[0, 0] = {"train": np.array([[1], [2]]), "val": np.array([[3]]), "test": np.array([[3]])}
    ids = np.tile(np.arange(1, 4)[:, None], (1, 4))
    scipy.io.savemat(tmp_path / "PETA.mat", {"peta": {"data": np.concatenate([ids, labels], 1),
                                                      "attribute": cell(names), "partion_attribute": partition}})
    data = load_annotations("peta", tmp_path)
    assert data.labels.tolist() == labels[:, :35].tolist() and len(data.attribute_names) == 35
    assert data.image_paths[0].name == "00001.png" and data.test_indices.tolist() == [2]


def test_peta_release_label_txt_folders(tmp_path):
    archive = tmp_path / "CUHK" / "archive"
    archive.mkdir(parents=True)
    for name in ("0001_a.png", "0001_b.png", "0002_a.png"):
        (archive / name).write_bytes(b"")
    (archive / "Label.txt").write_text("0001 personalMale hairLong upperBodyLogo notAnAttribute\n0002 accessoryHat\n")
    data = load_annotations("peta", tmp_path)
    assert len(data.image_paths) == 3 and data.attribute_names == PETA_EVALUATED_ATTRIBUTES
    male = PETA_EVALUATED_ATTRIBUTES.index("personalMale")
    assert data.labels[:, male].tolist() == [1, 1, 0]
    assert sorted(data.train_indices.tolist() + data.test_indices.tolist()) == [0, 1, 2]
    (archive / "Label.txt").write_text("0003 personalMale\n")
    with pytest.raises(SlimlabError, match="Label.txt:1: no image for person id '0003'"):
        load_annotations("peta", tmp_path)


class EasyDict(dict):
    """Stands in for easydict.EasyDict, which the toolbox pickles carry."""


EasyDict.__module__ = "easydict"


def test_toolbox_dataset_pkl_with_zero_shot_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "easydict", types.SimpleNamespace(EasyDict=EasyDict))  # pickling needs it here only
    dataset = EasyDict(image_name=["1.png", "2.png", "3.png"], attr_name=["Female", "Hat", "Age"],
                       label=np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]]), root=str(tmp_path / "images"),
                       partition=EasyDict(trainval=[np.array([0, 1]), np.array([1, 2])],
                                          test=[np.array([2]), np.array([0])]),
                       label_idx=EasyDict(eval=np.array([0, 1])))
    (tmp_path / "dataset_zs_run0.pkl").write_bytes(pickle.dumps(dataset))
    data = load_annotations("pkl", tmp_path / "dataset_zs_run0.pkl", partition=1)
    assert data.attribute_names == ("Female", "Hat") and data.labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert data.train_indices.tolist() == [1, 2] and data.test_indices.tolist() == [0]
    assert data.image_paths[0] == tmp_path / "images" / "1.png"


class RunsCode:
    def __reduce__(self):
        return (exec, ("open('ran.txt', 'w').write('ran')",))


def test_dataset_pkl_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"image_name": ["1.png"], "root": RunsCode()}))
    with pytest.raises(SlimlabError, match="refusing to load builtins.exec"):
        load_annotations("pkl", tmp_path / "evil.pkl")
    assert not (tmp_path / "ran.txt").exists()


def test_dataset_pkl_bad_attribute_and_partition_indices_are_named(tmp_path):
    base = dict(image_name=["1.png", "2.png"], attr_name=["Female", "Hat"], label=np.array([[1, 0], [0, 1]]),
                partition={"trainval": [np.array([0])], "test": [np.array([1])]})
    for change, message in (({"label_idx": {"eval": np.array([0, 2])}}, "'label_idx.eval' index 2 .* 2 attributes"),
                            ({"partition": {"trainval": [np.array([0])], "test": [np.array([5])]}},
                             "bad.pkl: test partition indexes outside the 2 images"),
                            ({"partition": {"trainval": [np.array([0.5])], "test": [np.array([1])]}},
                             "bad.pkl: train partition: indices must be whole numbers"),
                            ({"label_idx": [0, 1]}, "bad.pkl: 'label_idx' must be a mapping .* got a list"),
                            ({"partition": [0, 1]}, "bad.pkl: 'partition' must be a mapping .* got a list"),
                            ({"label": np.array([[1.0, np.nan], [np.nan, 0.0]])},
                             r"bad.pkl: 'label': value nan for image 0, attribute 'Hat' \(2 such entries\)"),
                            ({"label": np.array([[1, 0], [2, 1]])}, "value 2 for image 1, attribute 'Female'")):
        (tmp_path / "bad.pkl").write_bytes(pickle.dumps({**base, **change}))
        with pytest.raises(SlimlabError, match=message):
            load_annotations("pkl", tmp_path / "bad.pkl")


def test_wrong_attribute_count_and_missing_field_are_named(tmp_path):
    write_pa100k(tmp_path, train_label=np.array([[1, 0], [0, 1]]))
    with pytest.raises(SlimlabError, match="'train_label' has shape \\(2, 2\\) but there are 2 images and 3 attribute"):
        load_annotations("pa100k", tmp_path)
    scipy.io.savemat(tmp_path / "annotation.mat", {"attributes": cell(["Female"])})
    with pytest.raises(SlimlabError, match="missing field 'train_images_name'"):
        load_annotations("pa100k", tmp_path / "annotation.mat")
    (tmp_path / "broken.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(SlimlabError, match="broken.mat: cannot read"):
        load_annotations("pa100k", tmp_path / "broken.mat")
    with pytest.raises(SlimlabError, match="not found"):
        load_annotations("rap", tmp_path / "nothing_here.mat")


def test_dataset_pkl_reads_minus_one_as_negative(tmp_path):
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(dict(
        image_name=["1.png", "2.png"], attr_name=["Female", "Hat"], label=np.array([[1, -1], [-1, 1]]),
        partition={"trainval": [np.array([0])], "test": [np.array([1])]})))
    assert load_annotations("pkl", tmp_path / "d.pkl").labels.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(SlimlabError, match="is a folder; dataset=pkl needs the dataset .pkl file itself"):
        load_annotations("pkl", tmp_path)


def test_pa100k_labels_other_than_0_1_and_a_partition_are_refused(tmp_path):
    write_pa100k(tmp_path, train_label=np.array([[1, 0, -1], [0, 2, 0]]))
    with pytest.raises(SlimlabError, match=r"'train_label': value -1 for image 0, attribute 'Backpack' "
                                           r"\(2 such entries\); labels must be 0 or 1"):
        load_annotations("pa100k", tmp_path)
    write_pa100k(tmp_path)
    with pytest.raises(SlimlabError, match="annotation.mat: PA-100K has a single train/test split, so partition=1"):
        load_annotations("pa100k", tmp_path, partition=1)


def test_pa100k_with_an_empty_test_split_loads_it_empty(tmp_path):
    scipy.io.savemat(tmp_path / "annotation.mat", {
        "attributes": cell(["Female", "Hat"]), "train_images_name": cell(["1.jpg"]), "train_label": np.array([[1, 0]]),
        "val_images_name": cell(["2.jpg"]), "val_label": np.array([[0, 1]]),
        "test_images_name": np.empty((0, 1), dtype=object), "test_label": np.zeros((0, 2))})
    data = load_annotations("pa100k", tmp_path)  # the empty split is reported by check_splits, naming the split
    assert data.train_indices.tolist() == [0, 1] and data.test_indices.tolist() == []


def test_peta_label_txt_without_any_evaluated_attribute_is_refused(tmp_path):
    archive = tmp_path / "CUHK" / "archive"
    archive.mkdir(parents=True)
    (archive / "0001_a.png").write_bytes(b"")
    (archive / "Label.txt").write_text("0001 acessoryHat personalMael\n")  # misspelt: would train on all zeros
    with pytest.raises(SlimlabError, match="Label.txt: no line names any of the 35 evaluated PETA attributes"):
        load_annotations("peta", tmp_path)
    (archive / "Label.txt").write_text("0001 accessoryHat\n")
    with pytest.raises(SlimlabError, match=r"release layout \(Label.txt folders\) has a single train/test split"):
        load_annotations("peta", tmp_path, partition=2)
