"""What the web demo does per request, without Gradio: previews, generation, estimates and
guardrails. Every function takes paths, JSON and numbers, returns paths and text, raises
InputError with a sentence for the user, and touches no shared mutable state (the pipeline is
loaded once and only read)."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..conditioning import Conditioning, ConditioningSettings, build_conditioning
from ..config import CAMERA
from ..errors import InputError
from ..head_pose import head_yaw_pitch_roll
from ..head_pose.rasterizer import normals_to_rgb
from ..io import write_video
from ..io.video import mux_audio
from ..modes import Mode
from ..preview import draw_face_mesh
from ..viewpoint import Trajectory, rays_to_rgb
from ..viewpoint.paths import view_of_camera

log = logging.getLogger(__name__)

# A request's folder is made when its outputs are written and is needed only until Gradio has
# copied them into its own cache (before the response is sent): folders older than this are
# removed as new requests come in. Generous, for slow disks; never 0 (concurrent requests).
OUTPUT_TTL_S = 120.0
DEFAULT_RANGES = {"azimuth": [-60.0, 60.0], "elevation": [-30.0, 30.0], "head_yaw": [-45.0, 45.0]}
FAST = {"frames": 33, "size": 384, "steps": 20, "guidance": 1.0}


class GenerationCancelled(Exception):
    """Raised from the denoising callback when the user pressed Cancel."""


@dataclass
class Service:
    """Loaded once at start-up; per-request work happens in fresh folders."""

    pipeline: object | None = None  # FactorPortraitPipeline
    checkpoint: str | None = None
    landmarker: str | None = None
    max_generation_s: float = 900.0  # a run past this is stopped at its next step
    output_ttl_s: float = OUTPUT_TTL_S
    output_root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="factorportrait-"))
    )
    _cancel: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --------------------------------------------------------------------------- status
    def status_markdown(self) -> str:
        import torch

        device = "CUDA GPU" if torch.cuda.is_available() else "CPU"
        if self.pipeline is None:
            return (
                f"**Checkpoint:** none loaded, so previews work and generation does not. "
                f"Set `FACTORPORTRAIT_CHECKPOINT` to a pipeline folder or Hub id (see "
                f"README) and restart. **Device:** {device}."
            )
        status = self.pipeline.transformer.config.training_status
        label = {
            "untrained": "**UNTRAINED (tiny random): generation makes noise**",
            "wan-initialised": "**not trained yet (Wan-initialised): output is not a "
            "FactorPortrait result**",
            "trained": "trained",
        }.get(status, status)
        return f"**Checkpoint:** `{self.checkpoint}` ({label}). **Device:** {self.pipeline.device}."

    # ------------------------------------------------------------------------- requests
    def request_dir(self) -> Path:
        """A fresh folder for one request's outputs; old ones are swept here: those where
        nothing (the folder or a file in it) has changed for the TTL. The folder's own time
        alone would not do: it stops changing once a file is created, while that file may
        still be written for longer than the TTL."""
        now = time.time()
        for old in self.output_root.glob("req-*"):
            if now - last_change(old) > self.output_ttl_s:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="req-", dir=self.output_root))

    def cancel_event(self, session: str) -> threading.Event:
        """The session's one cancel flag, made on first use (check-then-create: the lock makes
        two first calls of one session share the same flag)."""
        with self._lock:
            event = self._cancel.get(session)
            if event is None:
                event = self._cancel[session] = threading.Event()
            return event

    def track_photo(self, path: str | None):
        """(overlay image, message) for an uploaded portrait."""
        if not path:
            return None, ""
        from ..io.media import read_image
        from ..tracking import FaceTracker

        image = read_image(path)
        with FaceTracker(self.landmarker) as tracker:
            faces = tracker.track_faces(image)
        if not faces:
            raise InputError(
                "No face found in this photo. Use a photo with one clearly "
                "visible face, looking roughly at the camera."
            )
        overlay = image
        for face in faces:
            overlay = draw_face_mesh(overlay, face.landmarks)
        note = (
            f"{len(faces)} faces found: the largest one is used."
            if len(faces) > 1
            else "Face found."
        )
        return overlay, note

    def track_clip(self, path: str | None):
        """(overlay of the first frame with a face, message) for an uploaded driving clip."""
        if not path:
            return None, ""
        from ..io.media import read_video
        from ..tracking import FaceTracker

        video = read_video(path, until_s=10.0)
        step = max(1, len(video.frames) // 12)
        with FaceTracker(self.landmarker) as tracker:
            for frame in video.frames[::step]:
                face = tracker.track_image(frame)
                if face is not None:
                    return draw_face_mesh(frame, face.landmarks), (
                        f"Face found. {len(video.frames)} frames, {video.duration:.1f} s"
                        + (", with audio." if video.has_audio else ".")
                    )
        raise InputError(
            "No face found in this clip. Use a clip where one face is clearly visible."
        )

    def conditioning(
        self, portrait, driving, mode, trajectory: Trajectory | None, settings: ConditioningSettings
    ) -> Conditioning:
        if not portrait:
            raise InputError("Upload a portrait photo first.")
        if Mode.parse(mode).needs_driving and not driving:
            raise InputError(
                f"The {mode} mode copies a driving video: upload one (or choose camera-only)."
            )
        return build_conditioning(
            portrait,
            driving or None,
            settings=settings,
            trajectory=trajectory,
            landmarker_path=self.landmarker,
        )

    def preview(self, portrait, driving, mode, trajectory, settings) -> dict:
        """Conditioning and its preview videos (normals, rays, tracking, strip)."""
        cond = self.conditioning(portrait, driving, mode, trajectory, settings)
        out = self.request_dir()
        normals = normals_to_rgb(cond.normals, cond.mask)
        rays = rays_to_rgb(cond.rays)
        tracking = tracking_frames(cond)
        paths = {
            "normals": write_video(out / "normals.mp4", normals, cond.fps),
            "rays": write_video(out / "rays.mp4", rays, cond.fps),
            "tracking": write_video(out / "tracking.mp4", tracking, cond.fps),
            "strip": write_video(
                out / "strip.mp4",
                side_by_side([tracking, normals, rays[:, :, : cond.width]], cond.height),
                cond.fps,
            ),
        }
        return {"paths": paths, "conditioning": cond, "summary": summary_markdown(cond)}

    def generate(
        self,
        portrait,
        driving,
        mode,
        trajectory,
        settings,
        *,
        steps,
        guidance,
        seed,
        session: str = "",
        progress=None,
    ) -> dict:
        from ..generation import check_generation_settings, generate_frames

        if self.pipeline is None:
            raise InputError(
                "No checkpoint is loaded, so there is nothing to generate with. "
                "Set FACTORPORTRAIT_CHECKPOINT (a pipeline folder or Hub id) and "
                "restart; previews work without one."
            )
        check_generation_settings(steps, guidance)
        cancel = self.cancel_event(session)
        cancel.clear()
        cond = self.conditioning(portrait, driving, mode, trajectory, settings)

        started = time.monotonic()

        def on_step(pipe, step, timestep, tensors):
            if cancel.is_set():
                log.info("generation cancelled after step %d of %d", step + 1, steps)
                raise GenerationCancelled("Generation cancelled.")
            if time.monotonic() - started > self.max_generation_s:
                log.warning("generation stopped after step %d of %d: time budget", step + 1, steps)
                raise GenerationCancelled(
                    f"Generation stopped: it ran past its time budget of "
                    f"{self.max_generation_s:.0f} s. Try fewer frames or steps."
                )
            if progress is not None:
                progress(step + 1, steps)
            return tensors

        import torch

        try:
            frames = generate_frames(
                self.pipeline, cond, steps=steps, guidance=guidance, seed=seed, callback=on_step
            )
        except GenerationCancelled as stop:
            raise InputError(str(stop)) from None
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise InputError(
                "The GPU ran out of memory for these settings. Try fewer frames, "
                "a smaller size, or the fast setting."
            ) from None
        out = self.request_dir()
        video = write_video(out / "result.mp4", frames, cond.fps)
        if driving and cond.report.get("driving", {}).get("has_audio") and cond.mode.drives_head:
            video = mux_audio(video, driving, out / "result_with_audio.mp4")
        strip = write_video(
            out / "side_by_side.mp4",
            side_by_side(
                [tracking_frames(cond), normals_to_rgb(cond.normals, cond.mask), frames],
                cond.height,
            ),
            cond.fps,
        )
        return {"video": video, "side_by_side": strip, "conditioning": cond}


def last_change(folder: Path) -> float:
    """The newest modification time of a folder and the files directly in it (0 if gone)."""
    times = []
    for path in (folder, *folder.glob("*")):
        try:
            times.append(path.stat().st_mtime)
        except OSError:  # removed meanwhile
            pass
    return max(times, default=0.0)


# ------------------------------------------------------------------------------ pictures
def tracking_frames(cond: Conditioning) -> np.ndarray:
    if cond.driving_frames is not None:
        frames = [
            draw_face_mesh(f, lm)
            for f, lm in zip(cond.driving_frames, cond.driving_landmarks, strict=True)
        ]
    else:
        frames = [draw_face_mesh(cond.reference, cond.source_landmarks)] * cond.frames
    return np.stack([_fit_height(f, cond.height) for f in frames])


def side_by_side(videos: list[np.ndarray], height: int) -> np.ndarray:
    """Videos of equal length, each scaled to ``height``, placed left to right."""
    panels = [np.stack([_fit_height(f, height) for f in video]) for video in videos]
    return np.concatenate(panels, axis=2)


def _fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    width = max(2, round(w * height / h / 2) * 2)
    if (h, w) == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------- estimates, guardrails
def estimate(
    frames: int,
    size: int,
    steps: int,
    guidance: float,
    *,
    parameters: float = 1.3e9,
    layers: int = 30,
    dim: int = 1536,
) -> dict[str, float]:
    """A rough cost model (bf16 on an H100/H200-class GPU at ~40% of its 990 TFLOPs):
    2 x params x tokens for the linear layers plus 4 x tokens^2 x dim x layers for attention,
    twice per step with guidance. Good to a factor of two, no better."""
    tokens = ((frames - 1) // 4 + 1) * (size // 16) ** 2
    flops = 2 * parameters * tokens + 4 * tokens**2 * dim * layers
    passes = steps * (2 if guidance > 1.0 else 1)
    seconds = flops * passes / (0.4 * 990e12) + 8.0  # + conditioning, VAE and overheads
    memory = parameters * 2 / 2**30 + tokens * dim * 2 * 40 / 2**30 + 4.0  # weights, acts, VAE
    return {"seconds": seconds, "gpu_gib": memory, "zerogpu_s": zerogpu_duration(frames, steps)}


def zerogpu_duration(frames: int, steps: int) -> int:
    """Seconds to ask ZeroGPU for: grows with frames x steps, clamped to what a call may use."""
    return int(min(300, max(30, 20 + 0.05 * frames * steps)))


def estimate_markdown(frames, size, steps, guidance) -> str:
    e = estimate(frames, size, steps, guidance)
    return (
        f"Estimated on a large GPU: about **{math.ceil(e['seconds'])} s**, "
        f"**{e['gpu_gib']:.0f} GiB** of GPU memory; a ZeroGPU call of "
        f"**{e['zerogpu_s']} s** (rough, for the 1.3B model)."
    )


def guardrails(cond: Conditioning, trajectory: Trajectory | None, ranges: dict | None) -> list[str]:
    """Warnings when the cameras or the driven head leave what the checkpoint was trained on,
    or the camera path does not start at the portrait's own view."""
    ranges = ranges or DEFAULT_RANGES
    warnings = []
    views = [view_of_camera(c) for c in cond.c2w]
    for name in ("azimuth", "elevation"):  # how far round the head the cameras go
        values = np.array([getattr(v, name) for v in views])
        low, high = ranges.get(name, DEFAULT_RANGES[name])
        if values.min() < low or values.max() > high:
            warnings.append(
                f"The camera goes to {name} {values.min():.0f} to {values.max():.0f} "
                f"degrees; the model was trained on {low:.0f} to {high:.0f}."
            )
    in_camera = np.linalg.inv(cond.c2w)[:, :3, :3] @ cond.head_pose[:, :3, :3]
    yaw = head_yaw_pitch_roll(in_camera)[:, 0]
    yaw = yaw - yaw[0]
    low, high = ranges.get("head_yaw", DEFAULT_RANGES["head_yaw"])
    if yaw.min() < low or yaw.max() > high:
        warnings.append(
            f"The driven head turns {yaw.min():.0f} to {yaw.max():.0f} degrees; "
            f"the model was trained on {low:.0f} to {high:.0f}."
        )
    if trajectory is not None and cond.mode.moving_camera:
        first = trajectory.keyframes[0]
        if trajectory.anchor == "head":
            warnings.append(
                "This path is absolute (anchor: head): its first view need not be "
                "the portrait's own, and the model sees the photo from there."
            )
        elif (
            abs(first.azimuth) > 2
            or abs(first.elevation) > 2
            or abs(first.roll) > 2
            or abs(first.distance - 1) > 0.05
            or abs(first.fov - CAMERA.fov_deg) > 2
        ):
            warnings.append(
                "The path starts away from the portrait's own view; the first "
                "frame will not look like the photo."
            )
    return warnings


def summary_markdown(cond: Conditioning) -> str:
    report = cond.report
    parts = [f"{cond.frames} frames at {cond.width}x{cond.height}, {cond.fps:g} fps."]
    if "driving_faces_tracked" in report:
        parts.append(
            f"Face tracked in {report['driving_faces_tracked']} driving frames"
            + (
                f", {report['driving_frames_filled']} filled in."
                if report["driving_frames_filled"]
                else "."
            )
        )
        parts.append(
            f"Jitter {report['jitter_px_raw']:.2f} px -> {report['jitter_px']:.2f} px "
            "after smoothing."
        )
    total = sum(report.get("seconds", {}).values())
    parts.append(f"Built in {total:.1f} s on the CPU.")
    parts += [f"Note: {w}" for w in report.get("warnings", [])]
    return " ".join(parts)


__all__ = ["FAST", "Service", "estimate", "estimate_markdown", "guardrails", "zerogpu_duration"]
