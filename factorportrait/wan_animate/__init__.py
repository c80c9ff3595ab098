"""Driving videos for Wan2.2-Animate made from our Conditioning: the pose (skeleton) video and the
face-crop video (ARCHITECTURE.md: The conditioning core)."""

from .faces import face_video
from .skeleton import pose_video

__all__ = ["face_video", "pose_video"]
