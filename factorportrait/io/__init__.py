"""Validated reading and writing of media and output folders."""

from .files import sha256_file
from .outputs import staged_output_dir, write_json
from .video import write_video

__all__ = ["sha256_file", "staged_output_dir", "write_json", "write_video"]
