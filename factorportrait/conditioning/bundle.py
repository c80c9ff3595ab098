"""What the core produces and what it is asked for: the Conditioning bundle and its settings."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..config import VIDEO, check_fps, check_frame_count, check_size
from ..errors import InputError
from ..expression import CROP_SIZE
from ..head_pose import HeadTemplate, render_head
from ..head_pose.rasterizer import normals_to_rgb
from ..modes import Mode
from ..viewpoint import plucker_rays
from .framing import PORTRAIT_CROP_SCALE
from .report import ConditioningReport


@dataclass(frozen=True)
class ConditioningSettings:
    """Everything but the media. Immutable: one per request, never shared state."""

    mode: Mode = Mode.FRONTAL_DYNAMIC  # a mode name is accepted and turned into the Mode
    frames: int | None = None  # None: from the driving clip (4k+1), or the default
    fps: float = VIDEO.fps
    height: int = VIDEO.height
    width: int = VIDEO.width
    smoothing: bool = True
    relative_pose: bool = True
    pose_strength: float = 1.0
    # novel-dynamic: the static view, as offsets from the portrait's own view
    novel_azimuth: float = 30.0
    novel_elevation: float = 0.0
    novel_distance: float = 1.0
    crop_size: int = CROP_SIZE
    # The square the portrait (and a driving clip) is framed in: this many face sizes (the
    # project's tight crop by default; wan-animate frames head and shoulders wider, as Wan's
    # own preprocessing does).
    framing_scale: float = PORTRAIT_CROP_SCALE

    def __post_init__(self):
        if not isinstance(self.mode, Mode) and self.mode in Mode._value2member_map_:
            object.__setattr__(self, "mode", Mode(self.mode))

    def validated(self) -> ConditioningSettings:
        Mode.parse(self.mode)
        if self.frames is not None:
            check_frame_count(self.frames)
        check_fps(self.fps)
        check_size(self.height, self.width)
        if not 0.0 <= self.pose_strength <= 2.0:
            raise InputError(f"pose strength: {self.pose_strength} is outside [0, 2]")
        if not 1.5 <= self.framing_scale <= 4.0:
            raise InputError(f"framing scale: {self.framing_scale} is outside [1.5, 4]")
        return self


@dataclass
class Conditioning:
    """Per-frame conditions for F output frames of H x W (ARCHITECTURE.md: The tensor contract)."""

    mode: Mode
    fps: float
    reference: np.ndarray  # (H, W, 3) uint8: the portrait, cropped and framed like the output
    K: np.ndarray  # (F, 3, 3)
    c2w: np.ndarray  # (F, 4, 4) world = portrait head frame, cm
    head_pose: np.ndarray  # (F, 4, 4) head -> world
    blendshapes: np.ndarray  # (F, 52)
    blendshape_names: list[str]
    crops: np.ndarray  # (F, s, s, 3) uint8 aligned face crops for the expression encoder
    # (F, 478, 2) C3's codes: the landmarks in the head's own frame, in face sizes, the stable
    # points 0 (expression.head_frame_landmarks; the name kept, prepared samples use it)
    crop_landmarks: np.ndarray
    source_landmarks: np.ndarray  # (478, 3) in reference pixels
    face_pixels: np.ndarray  # (F, 468, 2) where each template face vertex lands in each frame
    driving_frames: np.ndarray | None = None  # (F, h, w, 3) uint8, resampled to the output
    driving_landmarks: np.ndarray | None = None  # (F, 478, 3) in driving pixels
    # (4, 4) the camera of the reference image, which the rays are relative to
    reference_c2w: np.ndarray | None = None
    # (F, 6, H, W) float32 Plücker [o x d, d]: given, or made from the cameras the first time
    # ``rays`` is read (300 MB at 49x512x512, which a preview, drawing the maps at the size a
    # page shows them, never needs)
    ray_maps: np.ndarray | None = None
    # (F, H, W, 3) float32 camera-space unit normals (0 on the background) and (F, H, W) bool
    # mask: given, or rendered from ``head_template`` posed by ``head_pose`` through the cameras
    # the first time ``normals`` or ``mask`` is read (170 MB at 49x512x512; a preview renders
    # only their colours, ``normals_rgb``)
    normal_maps: np.ndarray | None = None
    normal_mask: np.ndarray | None = None
    head_template: HeadTemplate | None = None
    report: ConditioningReport = field(default_factory=ConditioningReport)
    # The maps above are made once even when several threads read them at once (a preview's
    # writers): hundreds of MB each.
    _making: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self):
        self.mode = Mode.parse(self.mode)  # a mode name is accepted and turned into the Mode
        if (self.normal_maps is None) != (self.normal_mask is None):
            raise InputError("conditioning: normal maps and their mask come together")

    @property
    def normals(self) -> np.ndarray:
        """(F, H, W, 3) float32 camera-space unit normals, 0 on the background."""
        with self._making:
            if self.normal_maps is None:
                render = self._render_head(colours=False)
                self.normal_maps, self.normal_mask = render.normals, render.mask
        return self.normal_maps

    @property
    def mask(self) -> np.ndarray:
        """(F, H, W) bool: where the head is."""
        if self.normal_mask is None:
            self.normals  # noqa: B018 (rendered together)
        return self.normal_mask

    def normals_rgb(self) -> np.ndarray:
        """(F, H, W, 3) uint8 pictures of the normals (RGB = (n + 1) / 2, black background),
        rendered straight to colours when the float maps were never made."""
        if self.normal_maps is not None:
            return normals_to_rgb(self.normal_maps, self.mask)
        return self._render_head(colours=True).colours

    def _render_head(self, *, colours: bool):
        if self.head_template is None:
            raise InputError("conditioning: no normal maps and no head template to render them")
        return render_head(
            self.head_template,
            self.head_pose,
            self.K,
            self.c2w,
            self.height,
            self.width,
            depth=False,
            colours=colours,
        )

    @property
    def rays(self) -> np.ndarray:
        """(F, 6, H, W) float32 Plücker maps [o x d, d] relative to the reference camera."""
        with self._making:
            if self.ray_maps is None:
                if self.reference_c2w is None:
                    raise InputError(
                        "conditioning: no ray maps and no reference camera to make them"
                    )
                self.ray_maps = plucker_rays(
                    self.K, self.c2w, self.height, self.width, reference_c2w=self.reference_c2w
                )
        return self.ray_maps

    @property
    def frames(self) -> int:
        return len(self.c2w)

    @property
    def height(self) -> int:
        return self.reference.shape[0]

    @property
    def width(self) -> int:
        return self.reference.shape[1]

    def arrays(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The npz payload (names as documented in the README); with ``names`` only those, so
        the normal and ray maps are made only when asked for."""
        makers = {
            "reference": lambda: self.reference,
            "normals": lambda: self.normals,
            "mask": lambda: self.mask,
            "rays": lambda: self.rays,
            "K": lambda: self.K.astype(np.float32),
            "c2w": lambda: self.c2w.astype(np.float32),
            "head_pose": lambda: self.head_pose.astype(np.float32),
            "blendshapes": lambda: self.blendshapes.astype(np.float32),
            "blendshape_names": lambda: np.array(self.blendshape_names),
            "crops": lambda: self.crops,
            "crop_landmarks": lambda: self.crop_landmarks.astype(np.float32),
            "source_landmarks": lambda: self.source_landmarks.astype(np.float32),
            "face_pixels": lambda: self.face_pixels.astype(np.float32),
            "fps": lambda: np.float32(self.fps),
            "mode": lambda: np.array(str(self.mode)),
        }
        if self.reference_c2w is not None:
            makers["reference_c2w"] = lambda: self.reference_c2w.astype(np.float32)
        chosen = makers if names is None else {name: makers[name] for name in names}
        return {name: make() for name, make in chosen.items()}
