"""The four control modes, defined once: what each takes from the driving video and how its
camera behaves. Nothing else in the code compares mode names."""

from __future__ import annotations

from enum import StrEnum

from .errors import InputError


class Mode(StrEnum):
    """A control mode. A ``str`` so it prints, serialises and compares as its name."""

    FRONTAL_DYNAMIC = "frontal-dynamic"
    NOVEL_DYNAMIC = "novel-dynamic"
    CAMERA_ONLY = "camera-only"
    ALL_DYNAMIC = "all-dynamic"

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"mode: {value!r} is not one of {', '.join(MODES)}") from None

    @property
    def drives_head(self) -> bool:
        """Head pose and expression follow the driving video (else they stay as in the photo)."""
        return self is not Mode.CAMERA_ONLY

    @property
    def needs_driving(self) -> bool:
        return self.drives_head

    @property
    def moving_camera(self) -> bool:
        """The camera flies a trajectory (else it holds one view)."""
        return self in (Mode.CAMERA_ONLY, Mode.ALL_DYNAMIC)

    @property
    def novel_view(self) -> bool:
        """The camera holds a chosen view other than the photo's own."""
        return self is Mode.NOVEL_DYNAMIC

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


MODES: tuple[str, ...] = tuple(mode.value for mode in Mode)

_DESCRIPTIONS = {
    Mode.FRONTAL_DYNAMIC: "Camera holds the photo's own view; head and face follow the driving video.",
    Mode.NOVEL_DYNAMIC: "Camera holds a new view you choose; head and face follow the driving video.",
    Mode.CAMERA_ONLY: "Head and face stay as in the photo; the camera flies along the path.",
    Mode.ALL_DYNAMIC: "Everything at once: the driving video's head and face, and the camera path.",
}
