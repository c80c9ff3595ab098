"""The words burnt into the top band of every frame an engine makes, so the video itself says
what made it (README: Engines). OpenCV only: the geometric engine's CPU path loads no torch."""

from __future__ import annotations

import cv2
import numpy as np

GEOMETRY_SHORT = "GEOMETRIC WARP, not diffusion, not FactorPortrait"

BANNER_FONT = cv2.FONT_HERSHEY_SIMPLEX
BANNER_MARGIN = 4  # pixels left free at the band's left and right ends


def banner_layout(text: str, height: int, width: int) -> tuple[int, float, list[tuple[str, int]]]:
    """Where a banner's words go in a frame of height x width: (band height, font scale,
    [(line, baseline y)]). The band is the top 1/14 of the frame (at least 12 pixels); the text
    takes one line or two, whichever lets it be larger, and is scaled down until every line
    fits between the margins, so no word is ever cut off."""
    band = max(12, height // 14)
    (_, glyph), descent = cv2.getTextSize("Ag", BANNER_FONT, 1.0, 1)
    best = None
    for lines in _banner_lines(text):
        widest = max(cv2.getTextSize(line, BANNER_FONT, 1.0, 1)[0][0] for line in lines)
        line_height = (glyph + descent) * len(lines)  # per unit of scale
        scale = min(band / 30, (width - 2 * BANNER_MARGIN) / widest, (band - 2) / line_height)
        if best is None or scale > best[0] * 1.05:  # two lines only when clearly larger
            best = (scale, lines)
    scale, lines = best
    # OpenCV rounds each glyph's advance, so tiny scales are wider than the ratio says.
    while scale > 0.01 and (
        max(cv2.getTextSize(line, BANNER_FONT, scale, 1)[0][0] for line in lines)
        > width - 2 * BANNER_MARGIN
    ):
        scale *= 0.9
    # Each line centred in its share of the band, descenders included.
    (_, glyph), descent = cv2.getTextSize("Ag", BANNER_FONT, scale, 1)  # as drawn, rounded
    pitch = band / len(lines)
    inset = max(0.0, (pitch - glyph - descent) / 2)
    baselines = [int(pitch * i + inset) + glyph for i in range(len(lines))]
    return band, scale, list(zip(lines, baselines, strict=True))


def _banner_lines(text: str) -> list[list[str]]:
    """The text on one line, and split into two at the word break that balances them best."""
    words = text.split()
    if len(words) < 2:
        return [[text]]
    splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    two = min(splits, key=lambda pair: max(len(pair[0]), len(pair[1])))
    return [[text], list(two)]


def burn_banner(frames: np.ndarray, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    """The frames with their top band darkened and ``text`` written on it (banner_layout)."""
    frames = frames.copy()
    band, scale, lines = banner_layout(text, *frames.shape[1:3])
    for frame in frames:
        frame[:band] = (frame[:band] * 0.25).astype(np.uint8)
        for line, baseline in lines:
            cv2.putText(
                frame, line, (BANNER_MARGIN, baseline), BANNER_FONT, scale, colour, 1, cv2.LINE_AA
            )
    return frames


def label_geometry(frames: np.ndarray) -> np.ndarray:
    """The geometric engine's banner on every frame: what it is, whole at every size."""
    from .geometry import GEOMETRY_NOTICE

    text = GEOMETRY_NOTICE if frames.shape[2] >= 400 else GEOMETRY_SHORT
    return burn_banner(frames, text, (120, 220, 255))
