"""The burnt-in banners (untrained model, wan-animate) are whole at every allowed output size."""

import cv2
import numpy as np
import pytest

from factorportrait.config import LIMITS
from factorportrait.engines.banner import (
    BANNER_FONT,
    BANNER_MARGIN,
    GEOMETRY_SHORT,
    banner_layout,
    label_geometry,
)
from factorportrait.engines.geometry import GEOMETRY_NOTICE
from factorportrait.engines.wan_animate import engine
from factorportrait.pipelines.generation import label_untrained
from factorportrait.pipelines.pipeline_factorportrait import UNTRAINED_NOTICE

SIDES = range(LIMITS.min_side, LIMITS.max_side + 1, LIMITS.size_multiple)


def _texts(width):
    return [
        UNTRAINED_NOTICE if width >= 400 else "UNTRAINED MODEL",
        engine.banner_text(width, tiny_random=False),
        engine.banner_text(width, tiny_random=True),
        GEOMETRY_NOTICE if width >= 400 else GEOMETRY_SHORT,
    ]


def test_every_word_fits_inside_the_band_at_every_allowed_size():
    for height in SIDES:
        for width in SIDES:
            for text in _texts(width):
                band, scale, lines = banner_layout(text, height, width)
                assert " ".join(line for line, _ in lines) == text  # nothing dropped
                for line, baseline in lines:
                    (line_width, glyph), descent = cv2.getTextSize(line, BANNER_FONT, scale, 1)
                    where = f"{text!r} at {width}x{height}"
                    assert BANNER_MARGIN + line_width <= width - BANNER_MARGIN + 1, where
                    assert baseline - glyph >= 0 and baseline + descent <= band, where


@pytest.mark.parametrize("size", [(512, 512), (256, 256), (400, 720), (1024, 1024), (64, 480)])
def test_the_drawn_text_stays_in_the_band_and_clear_of_the_right_edge(size):
    height, width = size
    grey = np.full((1, height, width, 3), 200, np.uint8)
    band = max(12, height // 14)
    for labelled in (
        label_untrained(grey),
        engine.label_wan_animate(grey, tiny_random=False),
        engine.label_wan_animate(grey, tiny_random=True),
        label_geometry(grey),
    ):
        assert np.array_equal(labelled[:, band:], grey[:, band:])  # only the band changes
        text = np.any(labelled[0, :band] != 50, axis=-1)  # 200 * 0.25 = 50 where no text is
        assert text.any() and not text[:, -(BANNER_MARGIN - 1) :].any()


def test_the_full_notice_is_legible_at_the_default_size():
    # 512 px, the demo's default: the whole sentence, no smaller than OpenCV's 0.5 scale
    # (11-pixel capitals), where it was cut off after "this output is n".
    band, scale, lines = banner_layout(UNTRAINED_NOTICE, 512, 512)
    assert " ".join(line for line, _ in lines) == UNTRAINED_NOTICE and scale >= 0.5


def test_every_banner_but_the_untrained_one_says_it_is_not_factorportrait_at_every_width():
    """Issue 29: at 256 px the tiny wan-animate banner dropped "NOT FactorPortrait"; the public
    model's and the geometric warp's banners say what they are not at every allowed width."""
    for width in SIDES:
        texts = [engine.banner_text(width, tiny_random=tiny) for tiny in (False, True)]
        texts.append(GEOMETRY_NOTICE if width >= 400 else GEOMETRY_SHORT)
        for text in texts:
            assert "not factorportrait" in text.lower(), (width, text)
