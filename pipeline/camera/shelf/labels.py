"""Shelf price labels: what they say and how one is drawn.

A label is a card with three lines of text: the product's name (``WHOLE MILK 1GAL``),
its price (``$3.49``, always ``\\$\\d+\\.\\d\\d``) and its unit price (``$0.03/oz``),
plus a barcode (bars, no text). ``random_label`` picks a product, a price, a font pair
and a card style; ``reprice`` gives the same label a new price; ``render_label`` draws
it at a height in pixels and says where each line's ink is on the card.

Fonts are TrueType files matplotlib ships (DejaVu Sans, Serif and Mono, STIX); where
matplotlib is missing, Pillow's built-in scalable font stands in.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "PRICE_PATTERN",
    "PRODUCTS",
    "STYLES",
    "UNIT_PRICE_PATTERN",
    "CardStyle",
    "LabelSpec",
    "Product",
    "RenderedLabel",
    "TextLine",
    "font_files",
    "format_price",
    "random_label",
    "render_label",
    "reprice",
    "unit_price",
]

PRICE_PATTERN = re.compile(r"\$\d+\.\d\d")
UNIT_PRICE_PATTERN = re.compile(r"\$\d+\.\d\d/\w+")

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Product:
    """A product: its name as printed, how much a pack holds, and a usual price."""

    name: str
    quantity: float  # units per pack, for the unit price
    unit: str  # "oz", "lb", "ea", ...
    cents: int  # a usual price


PRODUCTS: tuple[Product, ...] = (
    Product("WHOLE MILK 1GAL", 128, "oz", 349),
    Product("2% MILK 1/2GAL", 64, "oz", 229),
    Product("ORGANIC BANANAS", 1, "lb", 79),
    Product("GALA APPLES 3LB", 3, "lb", 449),
    Product("RUSSET POTATOES 5LB", 5, "lb", 399),
    Product("CHEDDAR CHEESE 8OZ", 8, "oz", 329),
    Product("GREEK YOGURT 32OZ", 32, "oz", 579),
    Product("LARGE EGGS 12CT", 12, "ct", 289),
    Product("SOURDOUGH BREAD", 24, "oz", 449),
    Product("BUTTER UNSALTED 1LB", 1, "lb", 499),
    Product("COFFEE BEANS 12OZ", 12, "oz", 899),
    Product("GREEN TEA 20CT", 20, "ct", 349),
    Product("ORANGE JUICE 52OZ", 52, "oz", 429),
    Product("SPARKLING WATER 8PK", 8, "ea", 499),
    Product("COLA 12PK CANS", 12, "ea", 699),
    Product("PASTA PENNE 16OZ", 16, "oz", 149),
    Product("MARINARA SAUCE 24OZ", 24, "oz", 379),
    Product("BASMATI RICE 2LB", 2, "lb", 459),
    Product("ROLLED OATS 42OZ", 42, "oz", 529),
    Product("PEANUT BUTTER 16OZ", 16, "oz", 319),
    Product("STRAWBERRY JAM 18OZ", 18, "oz", 389),
    Product("HONEY 12OZ", 12, "oz", 649),
    Product("OLIVE OIL 1L", 1, "l", 999),
    Product("TOMATO SOUP 10OZ", 10, "oz", 129),
    Product("BLACK BEANS 15OZ", 15, "oz", 109),
    Product("TUNA CHUNK 5OZ", 5, "oz", 169),
    Product("CORN FLAKES 18OZ", 18, "oz", 419),
    Product("POTATO CHIPS 8OZ", 8, "oz", 399),
    Product("DARK CHOCOLATE", 3.5, "oz", 279),
    Product("ALMONDS 16OZ", 16, "oz", 799),
    Product("GROUND BEEF 1LB", 1, "lb", 599),
    Product("CHICKEN BREAST", 1, "lb", 449),
    Product("SALMON FILLET", 1, "lb", 1199),
    Product("BABY SPINACH 5OZ", 5, "oz", 349),
    Product("AVOCADOS 4CT", 4, "ea", 499),
    Product("PAPER TOWELS 6RL", 6, "ea", 1099),
    Product("DISH SOAP 19OZ", 19, "oz", 299),
    Product("LAUNDRY PODS 42CT", 42, "ct", 1399),
    Product("TOOTHPASTE 4OZ", 4, "oz", 249),
    Product("SHAMPOO 12OZ", 12, "oz", 599),
)


@dataclass(frozen=True)
class CardStyle:
    """How a card looks: its paper, border and ink colours."""

    name: str
    paper: Colour
    border: Colour
    ink: Colour
    price_ink: Colour


STYLES: tuple[CardStyle, ...] = (
    CardStyle("white", (246, 246, 240), (150, 150, 150), (20, 20, 24), (10, 10, 12)),
    CardStyle("sale", (252, 222, 40), (200, 40, 30), (25, 20, 15), (190, 20, 20)),
    CardStyle("orange", (255, 168, 60), (120, 60, 10), (20, 15, 10), (15, 10, 10)),
    CardStyle("blue", (205, 228, 250), (40, 80, 160), (15, 30, 70), (10, 20, 60)),
    CardStyle("dark", (40, 44, 52), (90, 90, 100), (240, 240, 240), (255, 230, 80)),
)

# (name font, price font): regular and bold TrueType faces matplotlib ships.
_FONT_PAIRS: tuple[tuple[str, str], ...] = (
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("DejaVuSans-Bold.ttf", "DejaVuSans-Bold.ttf"),
    ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
    ("STIXGeneral.ttf", "STIXGeneralBol.ttf"),
    ("DejaVuSans-Oblique.ttf", "DejaVuSerif-Bold.ttf"),
)


@cache
def _font_dir() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    return folder if folder.is_dir() else None


def font_files() -> list[Path]:
    """The TrueType files labels are drawn with (empty without matplotlib)."""
    folder = _font_dir()
    if folder is None:
        return []
    names = sorted({name for pair in _FONT_PAIRS for name in pair})
    return [folder / name for name in names if (folder / name).is_file()]


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    folder = _font_dir()
    if folder is not None and (folder / name).is_file():
        return ImageFont.truetype(str(folder / name), size)
    return ImageFont.load_default(size)  # Pillow >= 10.1: a scalable font


@dataclass(frozen=True)
class LabelSpec:
    """What one label says and how it looks (everything ``render_label`` needs)."""

    product: Product
    cents: int
    style: CardStyle
    fonts: tuple[str, str]  # (name font, price font) file names
    aspect: float  # width / height of the card

    @property
    def price(self) -> str:
        return format_price(self.cents)

    @property
    def unit_price(self) -> str:
        return unit_price(self.cents, self.product)


def format_price(cents: int) -> str:
    """``349`` -> ``"$3.49"``."""
    return f"${cents // 100}.{cents % 100:02d}"


def unit_price(cents: int, product: Product) -> str:
    """The price per unit of ``product`` at ``cents`` a pack, as ``$0.03/oz``."""
    per = max(1, round(cents / product.quantity))
    return f"{format_price(per)}/{product.unit}"


def _price_near(rng: np.random.Generator, cents: int) -> int:
    """A shop's price near ``cents``: 60 % to 140 % of it, ending in 9."""
    value = int(cents * rng.uniform(0.6, 1.4))
    return max(9, value - value % 10 + 9)


def random_label(rng: np.random.Generator) -> LabelSpec:
    """A label for a random product, price, font pair and style."""
    product = PRODUCTS[int(rng.integers(len(PRODUCTS)))]
    style_weights = np.array([0.5, 0.2, 0.1, 0.12, 0.08])
    style = STYLES[int(rng.choice(len(STYLES), p=style_weights / style_weights.sum()))]
    fonts = _FONT_PAIRS[int(rng.integers(len(_FONT_PAIRS)))]
    aspect = float(rng.uniform(1.65, 2.05))
    return LabelSpec(product, _price_near(rng, product.cents), style, fonts, aspect)


def reprice(spec: LabelSpec, rng: np.random.Generator) -> LabelSpec:
    """The same label with a different price."""
    for _ in range(20):
        cents = _price_near(rng, spec.product.cents)
        if cents != spec.cents:
            return replace(spec, cents=cents)
    return replace(spec, cents=spec.cents + 100)


@dataclass(frozen=True)
class TextLine:
    """One line of text on a card: its kind, its text and the box around its ink.

    ``box`` is ``(x0, y0, x1, y1)`` in card pixels, ``x1``/``y1`` exclusive.
    """

    kind: str  # "name", "price" or "unit_price"
    text: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class RenderedLabel:
    """A drawn card (RGB, ``height`` x ``width``) and its text lines."""

    image: np.ndarray
    lines: tuple[TextLine, ...]
    paper: Colour


def _fit(
    text: str, font_name: str, size: int, width: int
) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font at ``size`` or smaller so that ``text`` is at most ``width`` wide."""
    size = max(4, size)
    while True:
        font = _font(font_name, size)
        left, _, right, _ = font.getbbox(text)
        if right - left <= width or size <= 4:
            return font
        size = max(4, int(size * min(0.95, width / max(1, right - left))))


def _draw_line(
    card: Image.Image,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    xy: tuple[float, float],
    anchor: str,
    ink: Colour,
) -> tuple[int, int, int, int]:
    """Draw ``text`` and return the box around its ink (card pixels)."""
    mask = Image.new("L", card.size, 0)
    ImageDraw.Draw(mask).text(xy, text, fill=255, font=font, anchor=anchor)
    box = mask.getbbox()
    card.paste(Image.new("RGB", card.size, ink), (0, 0), mask)
    if box is None:  # nothing drawn: a font too small for any pixel
        x, y = round(xy[0]), round(xy[1])
        return (x, y, x + 1, y + 1)
    return (int(box[0]), int(box[1]), int(box[2]), int(box[3]))


def _barcode(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], seed: int) -> None:
    x0, y0, x1, y1 = box
    bars = np.random.default_rng(seed).integers(1, 4, size=64)
    x, dark = x0, True
    unit = max(1.0, (x1 - x0) / 90)
    for width in bars:
        step = max(1, round(width * unit))
        if x + step > x1:
            break
        if dark:
            draw.rectangle((x, y0, x + step - 1, y1), fill=(0, 0, 0))
        x, dark = x + step, not dark


def render_label(spec: LabelSpec, height: int) -> RenderedLabel:
    """Draw ``spec`` as a card ``height`` pixels high: the name at the top, the price
    large below it, the unit price at the bottom left and a barcode at the bottom right."""
    height = max(12, int(height))
    width = max(20, round(height * spec.aspect))
    style = spec.style
    card = Image.new("RGB", (width, height), style.paper)
    draw = ImageDraw.Draw(card)
    edge = max(1, height // 40)
    draw.rectangle((0, 0, width - 1, height - 1), outline=style.border, width=edge)
    pad = max(2, round(0.07 * height))
    inner = width - 2 * pad
    name_font, price_font = spec.fonts

    name = _fit(spec.product.name, name_font, round(0.15 * height), inner)
    price = _fit(spec.price, price_font, round(0.43 * height), round(0.8 * inner))
    unit = _fit(spec.unit_price, name_font, round(0.13 * height), round(0.55 * inner))

    lines = (
        TextLine(
            "name",
            spec.product.name,
            _draw_line(card, spec.product.name, name, (pad, pad), "lt", style.ink),
        ),
        TextLine(
            "price",
            spec.price,
            _draw_line(card, spec.price, price, (pad, 0.56 * height), "lm", style.price_ink),
        ),
        TextLine(
            "unit_price",
            spec.unit_price,
            _draw_line(card, spec.unit_price, unit, (pad, height - pad), "lb", style.ink),
        ),
    )
    bar_top = round(0.78 * height)
    bar_left = max(lines[2].box[2] + pad, width - pad - round(0.3 * width))
    if bar_left < width - pad - 4 and bar_top < height - pad:
        _barcode(draw, (bar_left, bar_top, width - pad, height - pad), spec.cents)
    return RenderedLabel(np.asarray(card, dtype=np.uint8).copy(), lines, style.paper)
