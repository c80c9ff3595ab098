"""MediaPipe Face Landmarker (tasks API) on a photo or on every frame of a clip.

Per face: 478 landmarks, the facial transformation matrix (head pose), 52 blendshapes and a box.
MediaPipe's matrix maps its canonical face model (cm; x right, y up, z out of the face: our head
frame) into an OpenGL-style camera (y up, looking down -z); we convert it to OpenCV cameras.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..frame_threads import over_frames
from ..viewpoint.geometry import OPENGL_TO_OPENCV
from .model_file import resolve_face_landmarker

NUM_LANDMARKS = 478
NUM_BLENDSHAPES = 52
# A clip is tracked in this many parts at once, each by a video-mode landmarker of its own, on
# threads (a landmarker keeps one core busy and releases the GIL while it works: two parts take
# half the time on two cores). Fixed, not the core count, so a clip is tracked the same way on
# every machine. A part starts as a clip does, without the previous frame's face region; as up to
# four faces are sought, MediaPipe runs its face detector on every frame anyway, and on our test
# clips the parts give exactly the landmarks of an unbroken run. The face followed is chosen
# across the whole clip afterwards.
TRACKING_PARTS = 2
MIN_PART_FRAMES = 8


@dataclass(frozen=True)
class FaceObservation:
    """One tracked face in one image. Pixel units, image coordinates (x right, y down)."""

    landmarks: np.ndarray  # (478, 3): x, y in pixels; z = MediaPipe's relative depth x width
    head_to_camera: np.ndarray  # (4, 4) head frame (cm) -> OpenCV camera, MediaPipe's estimate
    blendshapes: np.ndarray  # (52,) in [0, 1]
    box: np.ndarray  # (4,) x0, y0, x1, y1 of the landmarks, pixels
    faces_found: int  # faces in the image; the largest (or the one being followed) is this one

    def scaled(self, scale: float, offset: tuple[float, float]) -> FaceObservation:
        """The same face in an image resized by ``scale`` after shifting by -offset."""
        landmarks = self.landmarks.copy()
        landmarks[:, 0] = (landmarks[:, 0] - offset[0]) * scale
        landmarks[:, 1] = (landmarks[:, 1] - offset[1]) * scale
        landmarks[:, 2] *= scale
        box = (self.box - np.array([offset[0], offset[1], offset[0], offset[1]])) * scale
        return FaceObservation(
            landmarks, self.head_to_camera, self.blendshapes, box, self.faces_found
        )


class FaceTracker:
    """Owns MediaPipe landmarkers; use as a context manager (they hold native resources)."""

    def __init__(self, model_path: str | Path | None = None, *, max_faces: int = 4):
        self.model_path = resolve_face_landmarker(model_path)
        self.max_faces = max_faces
        self.blendshape_names: list[str] | None = None
        self._image_landmarker = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._image_landmarker is not None:
            self._image_landmarker.close()
            self._image_landmarker = None

    def _create(self, video: bool):
        with _quiet_native_logs():
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.model_path)),
                running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
                num_faces=self.max_faces,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
            return vision.FaceLandmarker.create_from_options(options)

    def track_image(self, rgb: np.ndarray) -> FaceObservation | None:
        """The largest face of an RGB uint8 image, or None."""
        faces = self.track_faces(rgb)
        return max(faces, key=_box_area) if faces else None

    def track_faces(self, rgb: np.ndarray) -> list[FaceObservation]:
        """Every face of an RGB uint8 image (up to max_faces)."""
        if self._image_landmarker is None:
            self._image_landmarker = self._create(video=False)
        return self._faces(self._image_landmarker.detect(_mp_image(rgb)), rgb.shape)

    def track_frames(self, frames: np.ndarray, times: np.ndarray) -> list[FaceObservation | None]:
        """Every frame of a clip in video mode (tracking between frames) at its real time.

        The face followed is the largest in the first frame with a face, then the one nearest
        to it in each following frame, so a second person never steals the track. A clip of
        ``TRACKING_PARTS * MIN_PART_FRAMES`` frames or more is tracked in parts at once.
        """
        stamps_ms = _monotonic_milliseconds(times)
        parts = TRACKING_PARTS if len(frames) >= TRACKING_PARTS * MIN_PART_FRAMES else 1
        runs = over_frames(self._track_part, len(frames), frames, stamps_ms, workers=parts)
        observations: list[FaceObservation | None] = []
        previous = None
        for faces in (faces for run in runs for faces in run):
            if not faces:
                observations.append(None)
                continue
            if previous is None:
                chosen = max(faces, key=_box_area)
            else:
                chosen = min(faces, key=lambda f: _centre_distance(f.box, previous.box))
            observations.append(chosen)
            previous = chosen
        return observations

    def _track_part(
        self, frames: np.ndarray, stamps_ms: np.ndarray, start: int, stop: int
    ) -> list[list[FaceObservation]]:
        """Every face of frames ``start`` to ``stop``, by a video-mode landmarker of its own."""
        landmarker = self._create(video=True)
        try:
            return [
                self._faces(
                    landmarker.detect_for_video(_mp_image(frames[i]), int(stamps_ms[i])),
                    frames[i].shape,
                )
                for i in range(start, stop)
            ]
        finally:
            landmarker.close()

    def _faces(self, result, shape) -> list[FaceObservation]:
        height, width = shape[:2]
        faces = []
        count = len(result.face_landmarks)
        for i, landmarks in enumerate(result.face_landmarks):
            points = np.array([(p.x * width, p.y * height, p.z * width) for p in landmarks])
            if self.blendshape_names is None and result.face_blendshapes:
                self.blendshape_names = [c.category_name for c in result.face_blendshapes[i]]
            blendshapes = np.array([c.score for c in result.face_blendshapes[i]])
            matrix = OPENGL_TO_OPENCV @ np.asarray(
                result.facial_transformation_matrixes[i], np.float64
            )
            box = np.array(
                [points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()]
            )
            faces.append(FaceObservation(points, matrix, blendshapes, box, count))
        return faces


def _mp_image(rgb: np.ndarray):
    import mediapipe as mp

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"tracking: expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


def _monotonic_milliseconds(times: np.ndarray) -> np.ndarray:
    """Frame times in integer ms, strictly increasing as MediaPipe's video mode requires
    (real clips have duplicate or sub-millisecond timestamps)."""
    stamps = np.round(np.asarray(times, dtype=np.float64) * 1000.0).astype(np.int64)
    for i in range(1, len(stamps)):
        stamps[i] = max(stamps[i], stamps[i - 1] + 1)
    return stamps


def _box_area(face: FaceObservation) -> float:
    x0, y0, x1, y1 = face.box
    return float((x1 - x0) * (y1 - y0))


def _centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2))


@contextlib.contextmanager
def _quiet_native_logs():
    """MediaPipe's C++ logs (glog/absl) go to stderr; keep the CLI's output clean."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    yield
