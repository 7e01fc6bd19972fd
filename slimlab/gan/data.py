"""Paired and unpaired image folders with pix2pix/CycleGAN augmentation, sampled deterministically per step.

Paired folder: ``A/`` + ``B/`` with the same file names, or one folder of side-by-side ``A|B`` images.
Unpaired folder: a root holding ``trainA/`` + ``trainB/`` (the CycleGAN layout; no other folder names are read).
Every file is decoded once when the dataset is built (readable, not truncated, sizes consistent), so a bad file
stops the run before any training or output.

Batches come from ``batch(step)``: indices and augmentation are drawn from a generator seeded by
(seed, step), so resuming at step k sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.image_tasks import TASK_NAMES, builtin_task
from slimlab.core.images import image_size, list_images, load_image_tensor, resize

MEMORY_CACHE_LIMIT = 4096  # datasets up to this many examples are kept decoded in memory


@dataclass(frozen=True)
class Augmentation:
    load_size: int = 72     # resize to this square first ...
    crop_size: int = 64     # ... then take a random crop of this size (pix2pix: 286 -> 256)
    flip: bool = True       # random horizontal flip

    def apply(self, images: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        """The same resize / crop / flip on every image of one example (keeps pairs aligned)."""
        images = [resize(image, self.load_size) for image in images]  # (3, L, L)
        top, left = (int(torch.randint(0, self.load_size - self.crop_size + 1, (1,), generator=generator))
                     for _ in range(2))
        flip = self.flip and bool(torch.rand(1, generator=generator) < 0.5)
        out = []
        for image in images:
            image = image[:, top:top + self.crop_size, left:left + self.crop_size]
            out.append(image.flip(-1) if flip else image)
        return out


def resolve_data(data: str) -> Path:
    """``builtin:<task>`` -> generated cache folder; otherwise the folder as given."""
    if data.startswith("builtin:"):
        return builtin_task(data.split(":", 1)[1])
    if data in TASK_NAMES and not Path(data).exists():
        return builtin_task(data)
    return Path(data)


class PairedImageFolder:
    """Aligned (input A, target B) pairs from ``folder/A`` + ``folder/B`` or side-by-side ``A|B`` images."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder = folder
        if (folder / "A").is_dir() or (folder / "B").is_dir():
            a_files, b_files = list_images(folder / "A"), list_images(folder / "B")
            b_by_name = {f.name: f for f in b_files}
            unmatched = [f.name for f in a_files if f.name not in b_by_name]
            unmatched += [f.name for f in b_files if f.name not in {a.name for a in a_files}]
            if unmatched:
                raise SlimlabError(f"{folder}: files without a partner in A/ and B/: {', '.join(unmatched[:5])}")
            self.pairs = [(a, b_by_name[a.name]) for a in a_files]
            for a, b in self.pairs:
                if image_size(a) != image_size(b):
                    raise SlimlabError(f"{a} is {image_size(a)} (width, height) but its partner {b} is {image_size(b)}")
            self.side_by_side = False
        else:
            files = list_images(folder)
            for file in files:
                width, _ = image_size(file)
                if width % 2:
                    raise SlimlabError(f"{file}: side-by-side A|B image has odd width {width}; cannot split it")
            self.pairs = [(f, f) for f in files]
            self.side_by_side = True
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def example(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B), each (3, H, W) in [-1, 1]; small datasets stay decoded in memory after first use."""
        if index in self.cache:
            return self.cache[index]
        a_path, b_path = self.pairs[index]
        if self.side_by_side:
            image = load_image_tensor(a_path)
            half = image.shape[-1] // 2
            pair = image[..., :half], image[..., half:]
        else:
            pair = load_image_tensor(a_path), load_image_tensor(b_path)
        if len(self.pairs) <= MEMORY_CACHE_LIMIT:
            self.cache[index] = pair
        return pair

    def names(self) -> list[str]:
        return [a.name for a, _ in self.pairs]


class ImageFolder:
    """All images of one folder (one domain of an unpaired task)."""

    def __init__(self, folder: str | Path):
        self.files = list_images(folder)
        for file in self.files:
            image_size(file)
        self.cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def example(self, index: int) -> torch.Tensor:
        if index not in self.cache:
            image = load_image_tensor(self.files[index])
            if len(self.files) > MEMORY_CACHE_LIMIT:
                return image
            self.cache[index] = image
        return self.cache[index]


def unpaired_folders(root: str | Path, split: str = "train") -> tuple[ImageFolder, ImageFolder]:
    root = Path(root)
    return ImageFolder(root / f"{split}A"), ImageFolder(root / f"{split}B")


def paired_folder(root: str | Path, split: str = "train") -> PairedImageFolder:
    """``root/<split>`` when it exists (built-in layout), else ``root`` itself."""
    root = Path(root)
    try:
        return PairedImageFolder(root / split if (root / split).is_dir() else root)
    except SlimlabError as error:
        if (root / f"{split}A").is_dir():  # the CycleGAN layout read as paired (the default mode): say so
            raise SlimlabError(f"{error}; {root} has {split}A/, the unpaired layout: pass --mode unpaired") from error
        raise


class StepSampler:
    """Batches for step ``t`` drawn from a generator seeded by (seed, t): deterministic and resumable."""

    def __init__(self, augmentation: Augmentation, batch_size: int, seed: int):
        self.augmentation, self.batch_size, self.seed = augmentation, batch_size, seed

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step)

    def paired(self, dataset: PairedImageFolder, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) batches, each (B, 3, crop, crop)."""
        generator = self.generator(step)
        indices = torch.randint(0, len(dataset), (self.batch_size,), generator=generator).tolist()
        pairs = [self.augmentation.apply(list(dataset.example(i)), generator) for i in indices]
        return torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])

    def unpaired(self, domain_a: ImageFolder, domain_b: ImageFolder, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Independent batches of A and B images, each (B, 3, crop, crop)."""
        generator = self.generator(step)
        a = [self.augmentation.apply([domain_a.example(i)], generator)[0]
             for i in torch.randint(0, len(domain_a), (self.batch_size,), generator=generator).tolist()]
        b = [self.augmentation.apply([domain_b.example(i)], generator)[0]
             for i in torch.randint(0, len(domain_b), (self.batch_size,), generator=generator).tolist()]
        return torch.stack(a), torch.stack(b)
