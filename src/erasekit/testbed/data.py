"""ShapeCanvas: the procedural dataset the built-in testbed is trained on.

Every image is a 32x32 RGB drawing fully determined by ``(attributes, seed)``: one shape, in one
colour, on one background (or in the global ``neon`` artist style, which re-renders the whole
image). Each attribute value is a concept that erasure can target:

* ``shape``: circle, square, triangle, star, cross, heart, ``skull`` (stand-in for a harmful
  concept) and ``logo`` (one fixed, detailed emblem, the fictitious "Zentrix" brand: stand-in for a
  copyrighted work);
* ``colour``: eight well separated hues;
* ``background``: plain, stripes, dots, checker, grid, and ``neon`` (the "artist style": black
  canvas, glowing outline of the shape).

Captions are built from templates and per-value phrasings. Phrasings and templates are split
into ``train`` ones (the only ones the testbed ever sees) and ``heldout`` ones (synonyms and
implicit descriptions never seen in training), and shape+colour pairs into seen pairs and the
:data:`HELDOUT_PAIRS` (never drawn for training). All of this is data, below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from erasekit.concepts import article
from erasekit.errors import UserError
from erasekit.registry import did_you_mean

IMAGE_SIZE = 32
_RENDER = 128  # drawn at 4x, box-downsampled: cheap anti-aliasing

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "skull", "logo")
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
BACKGROUNDS: tuple[str, ...] = ("plain", "stripes", "dots", "checker", "grid", "neon")
FAMILIES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": COLOURS, "background": BACKGROUNDS}

#: RGB of each colour (drawn with +-12 per-channel jitter).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 25, 30),
    "orange": (250, 130, 0),
    "yellow": (245, 220, 10),
    "green": (25, 160, 45),
    "cyan": (0, 200, 215),
    "blue": (25, 55, 215),
    "purple": (125, 35, 180),
    "pink": (250, 110, 190),
}

Split = Literal["train", "heldout"]

#: Nouns for each shape. ``train`` phrasings are used in training; ``heldout`` never are.
SHAPE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "circle": {"train": ("circle", "disk", "round dot"), "heldout": ("disc", "ring")},
    "square": {"train": ("square", "box"), "heldout": ("square tile", "block")},
    "triangle": {"train": ("triangle", "three-sided shape"), "heldout": ("pyramid shape", "wedge")},
    "star": {"train": ("star", "five-pointed star"), "heldout": ("starburst", "pentagram")},
    "cross": {"train": ("cross", "plus sign"), "heldout": ("plus symbol", "swiss cross")},
    "heart": {"train": ("heart", "love heart"), "heldout": ("valentine heart", "heart symbol")},
    "skull": {"train": ("skull", "death's head"), "heldout": ("pirate emblem", "poison sign")},
    "logo": {"train": ("Zentrix logo", "Zentrix emblem"), "heldout": ("Zentrix trademark", "Zentrix brand mark")},
}

#: Adjectives for each colour.
COLOUR_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "red": {"train": ("red", "crimson"), "heldout": ("scarlet",)},
    "orange": {"train": ("orange", "tangerine"), "heldout": ("amber",)},
    "yellow": {"train": ("yellow", "lemon"), "heldout": ("golden",)},
    "green": {"train": ("green", "emerald"), "heldout": ("lime green",)},
    "cyan": {"train": ("cyan", "aqua"), "heldout": ("turquoise",)},
    "blue": {"train": ("blue", "navy blue"), "heldout": ("cobalt blue",)},
    "purple": {"train": ("purple", "violet"), "heldout": ("lilac",)},
    "pink": {"train": ("pink", "rose"), "heldout": ("hot pink",)},
}

#: Trailing phrase for each background / style.
BACKGROUND_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "plain": {"train": ("on a plain background", "on a blank background"), "heldout": ("on an empty backdrop",)},
    "stripes": {"train": ("on a striped background", "on stripes"), "heldout": ("on a banded backdrop",)},
    "dots": {"train": ("on a dotted background", "on polka dots"), "heldout": ("on a spotted backdrop",)},
    "checker": {"train": ("on a checkered background", "on a checkerboard"), "heldout": ("on a chessboard pattern",)},
    "grid": {"train": ("on a grid background", "on grid lines"), "heldout": ("on graph paper",)},
    "neon": {"train": ("in neon style", "as a neon sign"), "heldout": ("in glowing neon light",)},
}

#: Caption templates; ``{obj}`` is "<article> <colour> <shape>", ``{bg}`` the background phrase.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "train": ("{obj} {bg}", "a picture of {obj} {bg}", "an icon of {obj} {bg}"),
    "heldout": ("a drawing showing {obj} {bg}", "this image contains {obj} {bg}"),
}

#: Each family's phrase table (value -> {"train": [...], "heldout": [...]}).
PHRASES: dict[str, dict[str, dict[str, list[str]]]] = {
    "shape": SHAPE_PHRASES, "colour": COLOUR_PHRASES, "background": BACKGROUND_PHRASES,
}

#: Shape+colour pairs never drawn for training (a Latin-square diagonal: each shape and each
#: colour appears exactly once).
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("circle", "green"),
        ("square", "blue"),
        ("triangle", "purple"),
        ("star", "orange"),
        ("cross", "yellow"),
        ("heart", "red"),
        ("skull", "pink"),
        ("logo", "cyan"),
    }
)


@dataclass(frozen=True)
class Attributes:
    """One ShapeCanvas combination."""

    shape: str
    colour: str
    background: str

    def __post_init__(self) -> None:
        for family, value in (("shape", self.shape), ("colour", self.colour), ("background", self.background)):
            check_value(family, value)

    @property
    def heldout_pair(self) -> bool:
        """True when this shape+colour pair is never drawn in training."""
        return (self.shape, self.colour) in HELDOUT_PAIRS

    def as_dict(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "background": self.background}


def check_value(family: str, value: str) -> str:
    """Return ``value`` if it belongs to ``family``, else raise ``ValueError`` with a suggestion."""
    if family not in FAMILIES:
        raise UserError(f"unknown attribute family {family!r}{did_you_mean(family, FAMILIES)}")
    values = FAMILIES[family]
    if value not in values:
        raise UserError(
            f"unknown {family} {value!r}{did_you_mean(value, values)}; choose from {', '.join(values)}"
        )
    return value


def all_combinations(heldout_pairs: bool | None = None) -> list[Attributes]:
    """Every combination; ``heldout_pairs`` True/False keeps only held-out/seen pairs."""
    out = [Attributes(s, c, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS]
    if heldout_pairs is None:
        return out
    return [a for a in out if a.heldout_pair == heldout_pairs]


def caption(
    attrs: Attributes, rng: np.random.Generator, phrasing: Split = "train", only: str | None = None
) -> str:
    """Draw one caption for ``attrs`` from the ``phrasing`` split's templates and phrases.

    With ``only`` (a family name), just that family's words come from ``phrasing``; the other
    words and the template are training phrasings.
    """

    def split_for(family: str) -> Split:
        return phrasing if only is None or only == family else "train"

    shape = rng.choice(SHAPE_PHRASES[attrs.shape][split_for("shape")])
    colour = rng.choice(COLOUR_PHRASES[attrs.colour][split_for("colour")])
    bg = rng.choice(BACKGROUND_PHRASES[attrs.background][split_for("background")])
    template = rng.choice(TEMPLATES[phrasing if only is None else "train"])
    obj = f"{article(colour)} {colour} {shape}"
    return str(template).format(obj=obj, bg=bg)


def canonical_caption(attrs: Attributes, words: dict[str, str] | None = None) -> str:
    """The plain caption ``"a red circle on a striped background"`` (a training phrasing).

    ``words`` replaces a family's phrase, e.g. ``{"shape": "pirate emblem"}``."""
    words = words or {}
    colour = words.get("colour", COLOUR_PHRASES[attrs.colour]["train"][0])
    shape = words.get("shape", SHAPE_PHRASES[attrs.shape]["train"][0])
    bg = words.get("background", BACKGROUND_PHRASES[attrs.background]["train"][0])
    return f"{article(colour)} {colour} {shape} {bg}"


def training_captions(attrs: Attributes) -> list[str]:
    """Every caption the training phrasings can produce for ``attrs`` (sorted, no duplicates)."""
    out: set[str] = set()
    for template in TEMPLATES["train"]:
        for shape in SHAPE_PHRASES[attrs.shape]["train"]:
            for colour in COLOUR_PHRASES[attrs.colour]["train"]:
                for bg in BACKGROUND_PHRASES[attrs.background]["train"]:
                    out.add(template.format(obj=f"{article(colour)} {colour} {shape}", bg=bg))
    return sorted(out)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _circle(cx: float, cy: float, r: float, n: int = 40) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _regular(n: int, r: float, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _shape_polygons(shape: str) -> list[tuple[bool, list[tuple[float, float]]]]:
    """Polygons in unit coordinates (radius ~1); ``(True, poly)`` fills, ``(False, poly)`` cuts."""
    if shape == "circle":
        return [(True, _circle(0, 0, 0.95))]
    if shape == "square":
        return [(True, _rect(-0.8, -0.8, 0.8, 0.8))]
    if shape == "triangle":
        return [(True, [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)])]
    if shape == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
        return [(True, pts)]
    if shape == "cross":
        w = 0.3
        return [(True, [(-w, -0.95), (w, -0.95), (w, -w), (0.95, -w), (0.95, w), (w, w), (w, 0.95), (-w, 0.95),
                        (-w, w), (-0.95, w), (-0.95, -w), (-w, -w)])]
    if shape == "heart":
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -y / 17.0 + 0.1))
        return [(True, pts)]
    if shape == "skull":
        polys: list[tuple[bool, list[tuple[float, float]]]] = [
            (True, _circle(0, -0.22, 0.72)),  # cranium
            (True, _rect(-0.42, 0.2, 0.42, 0.9)),  # jaw
            (False, _circle(-0.3, -0.15, 0.2, 20)),  # eyes
            (False, _circle(0.3, -0.15, 0.2, 20)),
            (False, [(0.0, 0.12), (0.11, 0.32), (-0.11, 0.32)]),  # nose
        ]
        for x in (-0.22, 0.0, 0.22):  # gaps between teeth
            polys.append((False, _rect(x - 0.04, 0.62, x + 0.04, 0.9)))
        return polys
    if shape == "logo":  # the fixed "Zentrix" emblem: hexagon ring around a lightning bolt
        bolt = [(0.12, -0.62), (-0.34, 0.08), (-0.02, 0.08), (-0.14, 0.62), (0.34, -0.1), (0.02, -0.1)]
        return [(True, _regular(6, 1.0, 0.0)), (False, _regular(6, 0.74, 0.0)), (True, bolt)]
    raise UserError(f"unknown shape {shape!r}")


_GRID = np.mgrid[0:_RENDER, 0:_RENDER].astype(np.float32)


def _background(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A neutral-grey background of ``kind`` as a float (R, R, 3) array in [0, 255]."""
    r = _RENDER
    base = rng.uniform(175, 215)
    dark = base - rng.uniform(65, 90)
    img = np.full((r, r), base, dtype=np.float32)
    yy, xx = _GRID
    if kind == "stripes":
        period = rng.uniform(18, 26)
        coord = yy if rng.random() < 0.5 else xx
        img[((coord + rng.uniform(0, period)) % period) < period / 2] = dark
    elif kind == "dots":
        period = rng.uniform(18, 24)
        ox, oy = rng.uniform(0, period, size=2)
        dx = ((xx + ox) % period) - period / 2
        dy = ((yy + oy) % period) - period / 2
        img[dx**2 + dy**2 < (period * 0.24) ** 2] = dark
    elif kind == "checker":
        period = rng.uniform(28, 36)
        ox, oy = rng.uniform(0, period, size=2)
        img[((np.floor((xx + ox) / (period / 2)) + np.floor((yy + oy) / (period / 2))) % 2) == 1] = dark
    elif kind == "grid":
        period = rng.uniform(20, 26)
        ox, oy = rng.uniform(0, period, size=2)
        width = 4.0
        img[(((xx + ox) % period) < width) | (((yy + oy) % period) < width)] = dark
    elif kind != "plain":
        raise UserError(f"unknown background {kind!r}")
    return np.repeat(img[:, :, None], 3, axis=2)


def render(attrs: Attributes, seed: int) -> np.ndarray:
    """Draw ``attrs`` deterministically from ``seed``: a (32, 32, 3) uint8 array."""
    rng = np.random.default_rng(seed)
    r = _RENDER
    scale = r * rng.uniform(0.28, 0.36)
    cx, cy = r / 2 + rng.uniform(-0.08, 0.08, size=2) * r
    # the logo is a fixed emblem: no rotation
    angle = 0.0 if attrs.shape == "logo" else rng.uniform(-0.25, 0.25)
    ca, sa = math.cos(angle), math.sin(angle)

    mask = Image.new("L", (r, r), 0)
    draw = ImageDraw.Draw(mask)
    for fill, poly in _shape_polygons(attrs.shape):
        pts = [(cx + scale * (ca * x - sa * y), cy + scale * (sa * x + ca * y)) for x, y in poly]
        draw.polygon(pts, fill=255 if fill else 0)

    colour = np.clip(np.array(PALETTE[attrs.colour], dtype=np.float32) + rng.uniform(-12, 12, size=3), 0, 255)
    if attrs.background == "neon":
        # global style: dark canvas, the shape's outline glowing in its colour
        edge = np.asarray(mask, dtype=np.float32) - np.asarray(mask.filter(ImageFilter.MinFilter(9)), dtype=np.float32)
        edge_img = Image.fromarray(np.clip(edge, 0, 255).astype(np.uint8))
        glow = np.asarray(edge_img.filter(ImageFilter.GaussianBlur(5)), dtype=np.float32) / 255.0
        line = edge / 255.0
        intensity = np.clip(line + 1.6 * glow, 0, 1)[:, :, None]
        canvas = np.full((r, r, 3), rng.uniform(8, 22), dtype=np.float32)
        core = np.clip(colour + 60, 0, 255)  # hot core of the tube
        img = canvas * (1 - intensity) + intensity * colour
        img = img * (1 - line[:, :, None] * 0.5) + core * line[:, :, None] * 0.5
    else:
        bg = _background(attrs.background, rng)
        alpha = np.asarray(mask, dtype=np.float32)[:, :, None] / 255.0
        img = bg * (1 - alpha) + colour * alpha
    f = r // IMAGE_SIZE
    small = img.reshape(IMAGE_SIZE, f, IMAGE_SIZE, f, 3).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Sample:
    """One dataset item: pixels, caption and ground-truth attributes."""

    image: np.ndarray  # (32, 32, 3) uint8
    caption: str
    attributes: Attributes


def sample_attributes(rng: np.random.Generator, heldout_pairs: bool | None = False) -> Attributes:
    """Draw a combination; by default only seen pairs (``heldout_pairs=False``)."""
    while True:
        a = Attributes(
            SHAPES[rng.integers(len(SHAPES))],
            COLOURS[rng.integers(len(COLOURS))],
            BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        )
        if heldout_pairs is None or a.heldout_pair == heldout_pairs:
            return a


def iter_samples(
    n: int, seed: int, heldout_pairs: bool | None = False, phrasing: Split = "train"
) -> Iterator[Sample]:
    """Yield ``n`` samples, deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 0x5CA7])
    for _ in range(n):
        attrs = sample_attributes(rng, heldout_pairs)
        cap = caption(attrs, rng, phrasing)
        yield Sample(render(attrs, int(rng.integers(2**31))), cap, attrs)


def make_batch(
    n: int, seed: int, heldout_pairs: bool | None = False, phrasing: Split = "train"
) -> tuple[np.ndarray, list[str], list[Attributes]]:
    """``n`` samples stacked: a (n, 32, 32, 3) uint8 array, captions and attributes."""
    samples = list(iter_samples(n, seed, heldout_pairs, phrasing))
    return (
        np.stack([s.image for s in samples]),
        [s.caption for s in samples],
        [s.attributes for s in samples],
    )
