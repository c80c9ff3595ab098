"""What building a Conditioning found and did, as typed fields (one home, read by the preview,
the web demo, the CLI and ``prepare``). ``to_dict`` gives the flat form ``summary.json`` holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ClipTracking:
    """How a clip's faces were tracked: the driving clip at inference, the target in training."""

    faces_tracked: int
    frames_filled: int
    jitter_px_raw: float  # landmark jitter before smoothing
    jitter_px: float  # ... and after (equal when smoothing is off)


@dataclass
class DrivingFile:
    """The driving video as read."""

    decoded_frames: int
    duration_s: float
    declared_fps: float | None
    rotation: int
    has_audio: bool


@dataclass
class SampleCameras:
    """A training sample's cameras: how much the camera moves over the target (the C1 filter)
    and the unit of its recorded translations."""

    camera_turn_deg: float = 0.0
    camera_move_fraction: float = 0.0
    cm_per_unit: float | None = None
    cm_per_unit_source: str | None = None  # "file" or "estimated"
    head_centre_drift_cm: float | None = None  # the estimate's residual


@dataclass
class ConditioningReport:
    mode: str = ""
    warnings: list[str] = field(default_factory=list)
    portrait_faces_found: int | None = None
    reference_crop: list | None = None  # 2x3 photo -> reference pixels
    driving_file: DrivingFile | None = None
    clip: ClipTracking | None = None  # the driving clip (inference) or the target (training)
    frames: int | None = None
    fps: float | None = None
    height: int | None = None
    width: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    portrait_camera: dict | None = None  # fov_deg, distance_cm
    reprojection_px: float | None = None  # training: how well the template sits on the target
    cameras: SampleCameras | None = None  # training only

    def to_dict(self) -> dict:
        """The flat form of summary.json: the clip's fields as driving_*, the file as driving."""
        out = {
            "mode": self.mode,
            "warnings": list(self.warnings),
            "portrait_faces_found": self.portrait_faces_found,
            "reference_crop": self.reference_crop,
        }
        if self.driving_file is not None:
            out["driving"] = asdict(self.driving_file)
        if self.clip is not None:
            out.update(
                driving_faces_tracked=self.clip.faces_tracked,
                driving_frames_filled=self.clip.frames_filled,
                jitter_px_raw=self.clip.jitter_px_raw,
                jitter_px=self.clip.jitter_px,
            )
        out.update(
            frames=self.frames,
            fps=self.fps,
            height=self.height,
            width=self.width,
            seconds=dict(self.seconds),
            portrait_camera=self.portrait_camera,
        )
        if self.reprojection_px is not None:
            out["reprojection_px"] = self.reprojection_px
        if self.cameras is not None:
            out.update(asdict(self.cameras))
        return {key: value for key, value in out.items() if value is not None}
