"""Driving videos for Wan2.2-Animate made from our Conditioning: the pose (skeleton) video and the
face-crop video (ARCHITECTURE.md: The conditioning core); the engine itself in ``engine``.

Imported lazily: ``wan_animate.engine`` alone (a model benchmark on a machine without trimesh or
mediapipe) must not pull in the drawing code's dependencies."""

from __future__ import annotations

__all__ = ["face_video", "pose_video"]


def __getattr__(name: str):
    if name == "face_video":
        from .faces import face_video

        return face_video
    if name == "pose_video":
        from .skeleton import pose_video

        return pose_video
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
