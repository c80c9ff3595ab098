"""FactorPortrait: controllable portrait animation with disentangled expression, head pose and
viewpoint. See README.md and DESIGN.md for the architecture."""

__version__ = "0.1.0"

MODES = ("frontal-dynamic", "novel-dynamic", "camera-only", "all-dynamic")
