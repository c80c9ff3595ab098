"""``prepare``: turn a manifest of clips into training samples cached on disk.

Manifest: JSON lines, one clip each, paths relative to the manifest:

    {"id": "alice-001", "video": "clips/alice-001.mp4", "split": "train"}

Each clip becomes one self-reenactment sample, as the paper trains: the target is the clip's
first F frames (resampled to fps); the reference is the clip's last frame (the same person at
another time); the driving signals (head pose, expressions) come from the target itself. The
tracking, normal renders, packed rays, expression crops/blendshapes/landmarks and the VAE
latents of target, reference and normals are computed once and saved as one safetensors file
per clip. Re-running skips clips already done (resumable); clips that fail are listed in
skipped.jsonl with the reason, and the run goes on.

Only static cameras (monocular clips) are prepared: per-frame cameras and multi-view groups in
the manifest are refused per clip with a clear reason (not built yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..conditioning import ConditioningSettings, build_conditioning
from ..errors import InputError
from ..io.media import VideoFrames, read_video
from ..models import pack_plucker
from ..tracking import FaceTracker

EXPRESSION_CHANGE = 0.15  # blendshape range over a clip that counts as "expression changes"


@dataclass(frozen=True)
class ClipEntry:
    id: str
    video: Path
    split: str = "train"
    cameras: Path | None = None
    group: str | None = None


def read_manifest(path: str | Path) -> list[ClipEntry]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"--manifest {path}: {exc.strerror or exc}") from None
    entries, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            clip_id, video = str(data["id"]), path.parent / data["video"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f'{path.name} line {number}: needs "id" and "video" ({exc})') from None
        if not clip_id.replace("-", "").replace("_", "").isalnum() or clip_id in seen:
            raise InputError(
                f"{path.name} line {number}: id {clip_id!r} must be unique and "
                "made of letters, digits, - and _"
            )
        seen.add(clip_id)
        split = data.get("split", "train")
        if split not in ("train", "val"):
            raise InputError(f"{path.name} line {number}: split must be train or val")
        cameras = path.parent / data["cameras"] if data.get("cameras") else None
        entries.append(ClipEntry(clip_id, video, split, cameras, data.get("group")))
    if not entries:
        raise InputError(f"--manifest {path}: no clips")
    return entries


def prepare(
    manifest: str | Path,
    out: str | Path,
    pipeline,
    *,
    frames: int,
    size: int,
    fps: float,
    landmarker: str | Path | None = None,
) -> dict:
    """Prepare every clip of the manifest into ``out/samples``; returns counts."""
    entries = read_manifest(manifest)
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    skipped_log = out / "skipped.jsonl"
    done = skipped = 0
    settings = ConditioningSettings(
        mode="frontal-dynamic", frames=frames, fps=fps, height=size, width=size, relative_pose=False
    ).validated()
    with FaceTracker(landmarker) as tracker:
        for entry in tqdm(entries, desc="preparing clips", unit="clip"):
            target = out / "samples" / f"{entry.id}.safetensors"
            if target.exists():
                done += 1
                continue
            try:
                tensors, metadata = prepare_clip(entry, pipeline, settings, tracker)
            except InputError as exc:
                skipped += 1
                with open(skipped_log, "a", encoding="utf-8") as log:
                    log.write(json.dumps({"id": entry.id, "reason": str(exc)}) + "\n")
                continue
            partial = target.with_suffix(".partial")
            save_file(tensors, str(partial), metadata=metadata)
            partial.replace(target)  # a crash never leaves half a sample behind
            done += 1
    index = [
        json.loads(json.dumps(_metadata(p)))
        for p in sorted((out / "samples").glob("*.safetensors"))
    ]
    (out / "index.jsonl").write_text("".join(json.dumps(i) + "\n" for i in index))
    return {"prepared": done, "skipped": skipped, "samples": len(index)}


@torch.no_grad()
def prepare_clip(
    entry: ClipEntry, pipeline, settings: ConditioningSettings, tracker: FaceTracker
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if entry.cameras is not None or entry.group is not None:
        raise InputError(
            "per-frame cameras and multi-view groups are not supported by prepare "
            "yet (static-camera clips only)"
        )
    video = read_video(entry.video)
    window = (settings.frames - 1) / settings.fps
    if video.times[-1] <= window:
        raise InputError(
            f"{entry.video.name}: {video.times[-1]:.2f} s is too short for "
            f"{settings.frames} frames at {settings.fps:g} fps plus a reference frame"
        )
    reference_image = video.frames[-1]
    keep = video.times <= window + 0.5 / settings.fps
    target = VideoFrames(
        video.frames[keep],
        video.times[keep],
        video.declared_fps,
        video.source_size,
        video.rotation,
        video.has_audio,
    )
    cond = build_conditioning(reference_image, target, settings=settings, tracker=tracker)
    crop = np.array(cond.report["reference_crop"])
    size = (cond.width, cond.height)
    target_frames = np.stack(
        [
            cv2.warpAffine(f, crop, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            for f in cond.driving_frames
        ]
    )
    tensors = pipeline.tensors_from_conditioning(cond, "image")
    video_tensor = torch.from_numpy(target_frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    samples = {
        "target_latents": pipeline.encode_video(video_tensor)[0],
        "reference_latents": pipeline.encode_video(tensors["reference"][:, :, None])[0],
        "normal_latents": pipeline.encode_video(tensors["normals"])[0],
        "ray_latents": pack_plucker(tensors["rays"].float())[0],
        "crops": torch.from_numpy(cond.crops),
        "blendshapes": torch.from_numpy(cond.blendshapes).float(),
        "crop_landmarks": torch.from_numpy(cond.crop_landmarks).float(),
    }
    samples = {k: v.contiguous().cpu() for k, v in samples.items()}
    expression_change = float(np.ptp(cond.blendshapes, axis=0).max())
    metadata = {
        "id": entry.id,
        "split": entry.split,
        "frames": str(cond.frames),
        "height": str(cond.height),
        "width": str(cond.width),
        "expression_change": f"{expression_change:.4f}",
        "has_expression_change": str(expression_change > EXPRESSION_CHANGE).lower(),
        "has_camera_change": "false",
        "filled_frames": str(cond.report.get("driving_frames_filled", 0)),
    }
    return samples, metadata


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {**handle.metadata(), "file": f"samples/{path.name}"}
