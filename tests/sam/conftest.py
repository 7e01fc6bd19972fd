import cv2
import numpy as np
import pytest
import torch

from slimlab.sam.build import build_model, save_model


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "student.pth"
    save_model(build_model("shapes_student"), path)
    return path


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.png"
    picture = np.full((60, 90, 3), 40, np.uint8)
    cv2.circle(picture, (45, 30), 15, (200, 50, 50), -1)
    cv2.imwrite(str(path), picture)
    return path
