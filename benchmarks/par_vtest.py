"""The PAR benchmark's real-image sanity check (spec 5.1): HOG person crops from OpenCV's ``vtest.avi`` street video,
run through a model trained on the synthetic set. There are no labels, so it reports the prediction distribution
next to the synthetic training prevalence, and a grid of crops with their predicted attributes.

``vtest.avi`` ships in Debian's ``opencv-doc`` package: ``apt-get download opencv-doc && dpkg-deb -x
opencv-doc_*.deb DIR``, then pass ``--vtest DIR/usr/share/doc/opencv-doc/examples/data/vtest.avi``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimlab.core.errors import SlimlabError

DEBIAN_VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def default_vtest() -> str | None:
    return str(DEBIAN_VTEST) if DEBIAN_VTEST.exists() else None


def hog_person_crops(video: str | Path, frame_step: int = 20, min_weight: float = 0.5, height: int = 64,
                     width: int = 32) -> tuple[np.ndarray, list[dict]]:
    """People found by OpenCV's default HOG detector in every ``frame_step``-th frame, resized to (height, width).

    Returns (crops uint8 (N, height, width, 3) RGB, [{frame, box (x, y, w, h), weight}] per crop).
    """
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SlimlabError(f"vtest: cannot open the video {video}")
    detector = cv2.HOGDescriptor()
    detector.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    crops, where, index = [], [], 0
    while True:
        ok, frame = capture.read()  # (H, W, 3) BGR
        if not ok:
            break
        if index % frame_step == 0:
            boxes, weights = detector.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.05)
            for (x, y, w, h), weight in zip(boxes, np.asarray(weights).reshape(-1)):
                x0, y0 = max(0, x), max(0, y)
                patch = frame[y0:y + h, x0:x + w]  # boxes may reach past the frame's edge
                if weight < min_weight or patch.size == 0:
                    continue
                crops.append(cv2.cvtColor(cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA),
                                          cv2.COLOR_BGR2RGB))
                where.append({"frame": index, "box": [int(x), int(y), int(w), int(h)], "weight": float(weight)})
        index += 1
    capture.release()
    if not crops:
        raise SlimlabError(f"vtest: the HOG detector found no person in {video}")
    return np.stack(crops), where


def sanity_check(video: str | Path, checkpoint: str | Path, train_prevalence: np.ndarray, grid_path: Path,
                 grid_count: int = 24, frame_step: int = 20) -> dict:
    """Predict attributes on the HOG crops; write the grid PNG; return the figures for the report."""
    from slimlab.par.checkpoint import load_trained_model
    from slimlab.par.data import to_model_input

    crops, where = hog_person_crops(video, frame_step)
    model, _, names = load_trained_model(checkpoint)
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()  # (N, 3, 64, 32) uint8
    with torch.no_grad():
        probabilities = model(to_model_input(images))["probabilities"].float().numpy()  # (N, A)
    picks = np.linspace(0, len(crops) - 1, min(grid_count, len(crops))).round().astype(int)
    write_grid(crops[picks], probabilities[picks], names, grid_path)
    return {"video": str(video), "crops": len(crops), "frame_step": frame_step, "frames_with_people": len({w["frame"] for w in where}),
            "attributes": list(names), "mean_probability": probabilities.mean(0).tolist(),
            "share_predicted": (probabilities >= 0.5).mean(0).tolist(), "train_prevalence": train_prevalence.tolist(),
            "grid": grid_path.name}


def write_grid(crops: np.ndarray, probabilities: np.ndarray, names, path: Path) -> None:
    """Crops in a row-major grid, each captioned with its attributes at p >= 0.5 (highest first)."""
    import matplotlib.pyplot as plt

    from slimlab.core.plots import save_figure

    columns = 8
    rows = -(-len(crops) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 3.3))
    for k, axis in enumerate(np.atleast_1d(axes).reshape(-1)):
        axis.axis("off")
        if k >= len(crops):
            continue
        axis.imshow(crops[k])
        present = sorted((i for i in range(len(names)) if probabilities[k, i] >= 0.5), key=lambda i: -probabilities[k, i])
        axis.set_title("\n".join(f"{names[i]} {probabilities[k, i]:.2f}" for i in present[:3]) or "(none)", fontsize=6)
    save_figure(figure, path)
