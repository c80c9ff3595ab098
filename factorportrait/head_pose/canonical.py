"""MediaPipe's canonical face mesh, read from the landmarker bundle (ARCHITECTURE.md: The factors).

The bundle (a zip) holds ``geometry_pipeline_metadata_landmarks.binarypb``, a serialised
``GeometryPipelineMetadata`` protobuf whose ``canonical_mesh`` has 468 vertices (x, y, z in cm,
then u, v) and a triangle index buffer. mediapipe's wheel does not ship the generated Python
classes for this message, so the few fields we need are read from the protobuf wire format
directly (varints, fixed32 floats; packed or not), which is stable by design.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError

METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
NUM_MESH_VERTICES = 468  # the landmarks beyond these (468-477) are the irises


@dataclass(frozen=True)
class CanonicalFace:
    vertices: np.ndarray  # (468, 3) cm, head frame (x right, y up, z out of the face)
    uvs: np.ndarray  # (468, 2)
    faces: np.ndarray  # (T, 3) int, counter-clockwise seen from outside (normals point out)


@lru_cache(maxsize=4)
def load_canonical_face(bundle: str | Path) -> CanonicalFace:
    try:
        with zipfile.ZipFile(bundle) as archive:
            data = archive.read(METADATA_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"face landmarker bundle {bundle}: no canonical mesh ({exc})") from None
    mesh = _single(_fields(data), 1)  # GeometryPipelineMetadata.canonical_mesh
    floats: list[float] = []
    indices: list[int] = []
    for number, wire, value in _fields(mesh):
        if number == 3:  # Mesh3d.vertex_buffer: repeated float
            floats.extend(
                struct.unpack(f"<{len(value) // 4}f", value)
                if wire == 2
                else struct.unpack("<f", value)
            )
        elif number == 4:  # Mesh3d.index_buffer: repeated uint32
            indices.extend(_packed_varints(value) if wire == 2 else [value])
    vertex_buffer = np.array(floats, dtype=np.float64).reshape(-1, 5)
    faces = np.array(indices, dtype=np.int64).reshape(-1, 3)
    if len(vertex_buffer) != NUM_MESH_VERTICES or faces.max() >= NUM_MESH_VERTICES:
        raise InputError(
            f"face landmarker bundle {bundle}: unexpected canonical mesh "
            f"({len(vertex_buffer)} vertices)"
        )
    return CanonicalFace(vertex_buffer[:, :3], vertex_buffer[:, 3:], faces)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(data: bytes):
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise InputError(f"canonical mesh: unsupported protobuf wire type {wire}")
        yield number, wire, value


def _single(fields, number: int) -> bytes:
    for field_number, wire, value in fields:
        if field_number == number and wire == 2:
            return value
    raise InputError(f"canonical mesh: protobuf field {number} missing")


def _packed_varints(data: bytes) -> list[int]:
    values, i = [], 0
    while i < len(data):
        value, i = _varint(data, i)
        values.append(value)
    return values
