"""Validated reading and writing of media and output folders."""

from .outputs import staged_output_dir, write_json
from .video import write_video

__all__ = ["staged_output_dir", "write_json", "write_video"]
