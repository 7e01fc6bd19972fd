"""A seeded synthetic pedestrian set: correlated attributes, some weak or occluded, rendered at 64x32.

Each identity draws latent variables (gender, season, carrying style) and then ~15 binary attributes from a known
correlated model (long hair <-> female, shorts <-> summer <-> no coat, backpack <-> no handbag, hat, scarf and
boots <-> winter). Attributes are drawn in their body region with colour noise, pose jitter and background clutter
cropped from scikit-image's bundled photos and textures. **Weak** attributes (sunglasses, earrings, scarf, boots,
handbag, female) are small, low-contrast and hidden in half of the views, so an image alone often cannot show them
and only the context of other regions can. Each identity is rendered several times; the test split holds unseen
identities (``identity_disjoint``) or other views of training identities (the inflated protocol).

Controls: ``variant="independent"`` shuffles each attribute column across identities, keeping every marginal but
removing all correlation; the shuffled co-occurrence prior lives in ``pooling.shuffle_cooccurrence``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from slimlab.core.errors import SlimlabError

HEIGHT, WIDTH = 64, 32
# (name, branch: 0 head / 1 upper / 2 lower / 3 whole, weak)
ATTRIBUTES = (("long_hair", 0, False), ("hat", 0, False), ("sunglasses", 0, True), ("earrings", 0, True),
              ("coat", 1, False), ("short_sleeve", 1, False), ("backpack", 1, False), ("scarf", 1, True),
              ("logo", 1, False), ("shorts", 2, False), ("skirt", 2, False), ("boots", 2, True),
              ("handbag", 2, True), ("female", 3, True), ("umbrella", 3, False))
ATTRIBUTE_NAMES = tuple(name for name, _, _ in ATTRIBUTES)
ATTRIBUTE_TO_BRANCH = tuple(branch for _, branch, _ in ATTRIBUTES)
WEAK_ATTRIBUTES = tuple(i for i, (_, _, weak) in enumerate(ATTRIBUTES) if weak)
VARIANTS = ("correlated", "independent")


@dataclass(frozen=True)
class SyntheticPedestrians:
    train_images: np.ndarray       # (N, 64, 32, 3) uint8
    train_labels: np.ndarray       # (N, A) uint8
    test_images: np.ndarray
    test_labels: np.ndarray
    attribute_names: tuple[str, ...]
    attribute_to_branch: tuple[int, ...]
    weak_attributes: tuple[int, ...]
    oracle_labels: np.ndarray      # large label-only sample of the generator's true model (for the oracle prior)
    train_identity: np.ndarray     # (N,) the person each training view shows (views of one person share labels)
    test_identity: np.ndarray      # (M,) same numbering: disjoint from train_identity when identity_disjoint


def sample_attribute_labels(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, A) 0/1 labels from the correlated latent model."""
    r = lambda: rng.random(count)  # noqa: E731 - one fresh uniform per attribute draw
    female = r() < 0.5
    summer = r() < 0.5
    winter = ~summer
    carry = r()
    backpack = np.where(female, carry < 0.25, carry < 0.5)
    handbag = np.where(female, carry > 0.5, carry > 0.9)
    coat = np.where(winter, r() < 0.8, r() < 0.03)
    shorts = np.where(summer, np.where(female, r() < 0.35, r() < 0.7), r() < 0.02)
    columns = {
        "long_hair": np.where(female, r() < 0.85, r() < 0.1),
        "hat": np.where(winter, r() < 0.6, r() < 0.1),
        "sunglasses": np.where(summer, r() < 0.65, r() < 0.05),
        "earrings": np.where(female, r() < 0.6, r() < 0.03),
        "coat": coat,
        "short_sleeve": np.where(summer & ~coat, r() < 0.85, r() < 0.05),
        "backpack": backpack,
        "scarf": np.where(winter, r() < 0.65, r() < 0.02),
        "logo": r() < 0.3,
        "shorts": shorts,
        "skirt": female & ~shorts & np.where(summer, r() < 0.6, r() < 0.35),
        "boots": np.where(winter, np.where(female, r() < 0.7, r() < 0.45), r() < 0.05),
        "handbag": handbag,
        "female": female,
        "umbrella": np.where(winter, r() < 0.3, r() < 0.1),
    }
    return np.stack([columns[name] for name in ATTRIBUTE_NAMES], axis=1).astype(np.uint8)


@lru_cache(maxsize=1)
def background_pool() -> tuple[np.ndarray, ...]:
    """Street-like clutter sources: scikit-image's bundled photos and textures as float RGB in [0, 1]."""
    from skimage import data
    pool = []
    for name in ("brick", "grass", "gravel", "coffee", "astronaut", "chelsea", "rocket", "camera", "moon", "text"):
        image = getattr(data, name)().astype(np.float32) / 255.0
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        pool.append(image[:, :, :3])
    return tuple(pool)


def make_synthetic_pedestrians(train_count: int = 8000, test_count: int = 2000, variant: str = "correlated",
                               views_per_identity: int = 4, identity_disjoint: bool = True, seed: int = 0,
                               hide_probability: float = 0.5) -> SyntheticPedestrians:
    """Generate the set deterministically from ``seed`` (same arguments -> identical arrays)."""
    if variant not in VARIANTS:
        raise SlimlabError(f"synthetic: unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    if train_count < 1 or test_count < 1 or views_per_identity < 1:
        raise SlimlabError("synthetic: train_count, test_count and views_per_identity must be >= 1")
    rng = np.random.default_rng(seed)
    train_ids = -(-train_count // views_per_identity)
    test_ids = -(-test_count // views_per_identity) if identity_disjoint else 0
    labels = sample_attribute_labels(train_ids + test_ids, rng)
    if variant == "independent":
        for column in range(labels.shape[1]):  # same marginals, no correlation left
            labels[:, column] = rng.permutation(labels[:, column])
    palettes = rng.random((train_ids + test_ids, 8, 3)).astype(np.float32)  # each identity's own colours
    train_identity = np.arange(train_count) % train_ids
    if identity_disjoint:
        test_identity = train_ids + np.arange(test_count) % test_ids
    else:
        test_identity = rng.integers(0, train_ids, size=test_count)
    render = lambda ids: np.stack([render_pedestrian(labels[i], palettes[i], rng, hide_probability) for i in ids])  # noqa: E731
    oracle = sample_attribute_labels(100_000, np.random.default_rng(seed + 1))
    if variant == "independent":
        oracle = np.stack([np.random.default_rng(seed + 2 + c).permutation(oracle[:, c]) for c in range(oracle.shape[1])], 1)
    return SyntheticPedestrians(render(train_identity), labels[train_identity], render(test_identity),
                                labels[test_identity], ATTRIBUTE_NAMES, ATTRIBUTE_TO_BRANCH, WEAK_ATTRIBUTES, oracle,
                                train_identity, test_identity)


def render_pedestrian(labels: np.ndarray, palette: np.ndarray, rng: np.random.Generator,
                      hide_probability: float) -> np.ndarray:
    """One 64x32 uint8 RGB view of a person with these attributes (pose, colour and background drawn from rng)."""
    a = dict(zip(ATTRIBUTE_NAMES, labels.astype(bool)))
    pool = background_pool()
    source = pool[rng.integers(len(pool))]
    top, left = rng.integers(0, source.shape[0] - 2 * HEIGHT), rng.integers(0, source.shape[1] - 2 * WIDTH)
    canvas = source[top:top + 2 * HEIGHT:2, left:left + 2 * WIDTH:2].copy() * rng.uniform(0.5, 1.0)  # (64, 32, 3)
    scale, dx, dy = rng.uniform(0.85, 1.0), rng.uniform(-2.5, 2.5), rng.uniform(-2.5, 2.5)
    jitter = lambda color: np.clip(color + rng.normal(0, 0.04, 3), 0, 1)  # noqa: E731 - per-view colour noise
    skin, hair, shirt, pants = jitter(np.array([0.85, 0.65, 0.5])), jitter(palette[0] * 0.4), jitter(palette[1]), jitter(palette[2])
    visible = lambda name: a[name] and rng.random() >= hide_probability  # noqa: E731 - weak ones are often occluded
    faint = lambda base, color, strength=0.3: base + strength * (color - base)  # noqa: E731 - low contrast

    def box(x0, y0, x1, y1, color):
        """Fill a rectangle given in canonical 64x32 coordinates, after the view's scale and shift."""
        X0, X1 = [int(round(16 + scale * (x - 16) + dx)) for x in (x0, x1)]
        Y0, Y1 = [int(round(32 + scale * (y - 32) + dy)) for y in (y0, y1)]
        canvas[max(Y0, 0):max(Y1, 0), max(X0, 0):max(X1, 0)] = color

    # Whole body: umbrella behind the person (canopy above the head, handle at the side).
    if a["umbrella"]:
        box(14, 0, 32, 4, jitter(palette[3])), box(28, 3, 29, 30, np.array([0.1, 0.1, 0.1]))
    # Lower body: legs, shorts (skin below the knee), skirt, boots.
    box(9, 36, 15, 62, pants), box(17, 36, 23, 62, pants)
    if a["shorts"]:
        box(9, 45, 15, 62, skin), box(17, 45, 23, 62, skin)
    if a["skirt"]:
        for row in range(36, 49):
            spread = (row - 36) // 4
            box(8 - spread, row, 24 + spread, row + 1, jitter(palette[4]))
    if visible("boots"):
        box(9, 55, 15, 62, faint(pants, np.zeros(3))), box(17, 55, 23, 62, faint(pants, np.zeros(3)))
    # Upper body: torso (narrower for women, a weak cue), sleeves, coat, backpack straps, scarf, logo.
    torso = jitter(palette[5] * 0.6) if a["coat"] else shirt
    narrow = 1 if a["female"] and rng.random() >= hide_probability else 0
    box(8 + narrow, 16, 24 - narrow, 42 if a["coat"] else 36, torso)
    sleeve_end = 21 if a["short_sleeve"] and not a["coat"] else 32
    box(5, 16, 8, sleeve_end, torso), box(24, 16, 27, sleeve_end, torso)
    box(5, sleeve_end, 8, 33, skin), box(24, sleeve_end, 27, 33, skin)
    if a["backpack"]:
        strap = jitter(palette[6] * 0.5)
        box(10, 16, 12, 32, strap), box(20, 16, 22, 32, strap)
    if visible("scarf"):
        box(10, 16, 22, 20, faint(torso, palette[7]))
    if a["logo"]:
        box(14, 23, 19, 28, 1.0 - torso)
    if visible("handbag"):
        box(25, 33, 30, 40, faint(canvas[40, 28], palette[7], 0.45))
    # Head: hair (long hair falls to the shoulders), face, hat, sunglasses, earrings.
    box(10, 3, 22, 20 if a["long_hair"] else 7, hair)
    box(12, 5, 20, 15, skin)
    if a["hat"]:
        box(9, 1, 23, 5, jitter(palette[3])), box(7, 4, 25, 5, jitter(palette[3]))
    if visible("sunglasses"):
        box(12, 8, 20, 10, faint(skin, np.zeros(3), 0.45))
    if visible("earrings"):
        box(11, 11, 12, 13, faint(skin, np.array([1.0, 0.9, 0.1]), 0.5)), box(20, 11, 21, 13, faint(skin, np.array([1.0, 0.9, 0.1]), 0.5))
    canvas = canvas * rng.uniform(0.7, 1.15) + rng.normal(0, 0.05, canvas.shape)  # exposure and sensor noise
    return (np.clip(canvas, 0, 1) * 255).astype(np.uint8)
