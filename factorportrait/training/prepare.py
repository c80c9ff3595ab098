"""``prepare``: turn a manifest of clips into training samples cached on disk.

Manifest: JSON lines, one clip each, paths relative to the manifest:

    {"id": "alice-001", "video": "clips/alice-001.mp4", "split": "train"}
    {"id": "bob-cam2", "video": "bob/cam2.mp4", "cameras": "bob/cam2.json", "group": "bob"}

Each clip becomes one self-reenactment sample, as the paper trains: the target is the clip's
first F frames (resampled to fps); the reference is the same person at another time: the
clip's last frame, or, for a clip in a multi-view ``group`` (clips of the same moment from
several cameras), the last frame of the next clip of its group: another time and another
camera. The driving signals (head pose, expressions) come from the target itself, and the
target's recorded ``cameras`` (one camera-to-world matrix per decoded frame, see
``samples.read_camera_file``) give the camera motion; without them the camera is static.

The tracking, normal renders, packed rays, expression crops/blendshapes/landmarks and the VAE
latents of target, reference and normals are computed once and saved as one safetensors file
per clip; the expression inputs' per-feature statistics over the training split go to
``expression_stats.json`` (train puts them into the expression encoder's config). Re-running skips clips already done (resumable); clips that fail are listed in
skipped.jsonl with the reason, and the run goes on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..conditioning import ConditioningSettings
from ..errors import InputError
from ..io.media import probe_frame_times, read_video
from ..models import pack_plucker
from ..pipelines.checkpoints import component_digests
from ..tracking import FaceTracker
from .config import EXPRESSION_CHANGE
from .expression_stats import write_prepared_statistics
from .samples import build_sample_conditioning, read_camera_file, sample_ranges


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
        where = f"{path.name} line {number}"
        try:
            data = json.loads(line)
            clip_id, video = str(data["id"]), path.parent / data["video"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f'{where}: needs "id" and "video" ({exc})') from None
        unknown = set(data) - {"id", "video", "split", "cameras", "group"}
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for name in ("cameras", "group"):
            if name in data and not (isinstance(data[name], str) and data[name]):
                raise InputError(f"{where}: {name} must be a non-empty string")
        if not clip_id.replace("-", "").replace("_", "").isalnum() or clip_id in seen:
            raise InputError(
                f"{where}: id {clip_id!r} must be unique and made of letters, digits, - and _"
            )
        seen.add(clip_id)
        split = data.get("split", "train")
        if split not in ("train", "val"):
            raise InputError(f"{where}: split must be train or val")
        cameras = path.parent / data["cameras"] if "cameras" in data else None
        entries.append(ClipEntry(clip_id, video, split, cameras, data.get("group")))
    if not entries:
        raise InputError(f"--manifest {path}: no clips")
    for group, members in group_members(entries).items():
        if len({m.split for m in members}) > 1:  # a held-out moment must not leak into train
            raise InputError(f"--manifest {path.name}: group {group!r} mixes train and val clips")
    return entries


def group_members(entries: list[ClipEntry]) -> dict[str, list[ClipEntry]]:
    groups: dict[str, list[ClipEntry]] = {}
    for entry in entries:
        if entry.group is not None:
            groups.setdefault(entry.group, []).append(entry)
    return groups


def reference_entry(entry: ClipEntry, groups: dict[str, list[ClipEntry]]) -> ClipEntry:
    """Where the reference frame comes from: the next clip of the group (another camera), or
    the clip itself when it has no group or is alone in it."""
    members = groups.get(entry.group, []) if entry.group is not None else []
    if len(members) < 2:
        return entry
    return members[(members.index(entry) + 1) % len(members)]


def prepare(
    manifest: str | Path,
    out: str | Path,
    pipeline,
    *,
    frames: int,
    size: int,
    fps: float,
    landmarker: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
    keep_crops: bool = False,
    windows: int = 1,
) -> dict:
    """Prepare the manifest's clips into ``out/samples``; returns counts.

    shard=(k, n): only every n-th clip from the k-th, so n processes (one per GPU, say) can
    prepare one manifest into one folder at once; every file is written atomically and the
    indexes are rebuilt from the folders by whichever finishes, the last one completely.
    keep_crops: also store the aligned face crops (the expression backbone's features are
    stored either way when the checkpoint has one; crops let another backbone be used later).
    windows: up to this many samples per clip, from non-overlapping windows spread over it
    (sample ids ``<clip>-w<k>`` when above 1); counts are of samples.
    """
    if windows < 1:
        raise InputError(f"--windows {windows}: expected at least 1")
    entries = read_manifest(manifest)
    groups = group_members(entries)
    index_of_shard, shards = shard
    if not 0 <= index_of_shard < shards:
        raise InputError(f"--shard {index_of_shard}/{shards}: expected K/N with 0 <= K < N")
    out = Path(out)
    for folder in ("samples", "skipped"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    done = skipped = 0
    settings = ConditioningSettings(frames=frames, fps=fps, height=size, width=size).validated()
    # Which VAE and expression backbone made the cached latents and features: train checks.
    made_by = component_digests(pipeline)
    with FaceTracker(landmarker) as tracker:
        mine = entries[index_of_shard::shards]
        for entry in tqdm(mine, desc="preparing clips", unit="clip"):
            failure = out / "skipped" / f"{entry.id}.json"
            try:
                last_time = probe_frame_times(entry.video)[-1]
                starts = clip_windows(last_time, settings, windows, entry.video.name)
                names = (
                    [entry.id] if windows == 1 else [f"{entry.id}-w{k}" for k in range(len(starts))]
                )
                todo = [
                    (name, start)
                    for name, start in zip(names, starts, strict=True)
                    if not (out / "samples" / f"{name}.safetensors").exists()
                ]
                done += len(names) - len(todo)
                if todo:
                    for name, tensors, metadata in prepare_clip(
                        entry,
                        reference_entry(entry, groups),
                        pipeline,
                        settings,
                        tracker,
                        todo,
                        keep_crops=keep_crops,
                    ):
                        target = out / "samples" / f"{name}.safetensors"
                        partial = target.with_suffix(".partial")
                        save_file(tensors, str(partial), metadata={**metadata, **made_by})
                        partial.replace(target)  # a crash never leaves half a sample behind
                        done += 1
            except InputError as exc:  # recorded, and retried by the next run
                skipped += 1
                _write_atomically(failure, json.dumps({"id": entry.id, "reason": str(exc)}))
                continue
            failure.unlink(missing_ok=True)
    index = [_metadata(p) for p in sorted((out / "samples").glob("*.safetensors"))]
    _write_atomically(out / "index.jsonl", "".join(json.dumps(i) + "\n" for i in index))
    # The expression encoder's input statistics over the training split: train puts them into
    # the encoder's config (rebuilt like the index, so the last shard to finish has them all).
    if any(row.get("split") == "train" for row in index):
        write_prepared_statistics(out)
    failures = sorted((out / "skipped").glob("*.json"))
    _write_atomically(
        out / "skipped.jsonl", "".join(p.read_text(encoding="utf-8") + "\n" for p in failures)
    )
    return {"prepared": done, "skipped": skipped, "samples": len(index)}


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def clip_windows(
    last_time: float, settings: ConditioningSettings, count: int, name: str = "clip"
) -> list[float]:
    """Start times of up to ``count`` non-overlapping target windows spread over a clip whose
    last frame is at ``last_time``; the reference (the clip's far end) stays outside each."""
    window = (settings.frames - 1) / settings.fps
    if last_time <= window:
        raise InputError(
            f"{name}: {last_time:.2f} s is too short for {settings.frames} frames at "
            f"{settings.fps:g} fps plus a reference frame"
        )
    spacing = window + 1 / settings.fps  # a window and a frame: no frame in two windows
    count = min(count, 1 + int(np.floor((last_time - window) / spacing + 1e-9)))
    if count == 1:
        return [0.0]
    return list(np.linspace(0.0, last_time - window, count))


@torch.no_grad()
def prepare_clip(
    entry: ClipEntry,
    reference: ClipEntry,
    pipeline,
    settings: ConditioningSettings,
    tracker: FaceTracker,
    windows: list[tuple[str, float]],
    *,
    keep_crops: bool = False,
):
    """Yield (sample id, tensors, metadata) for each (id, start time) window of a clip. Only
    the windows' frames and the clip's two ends are decoded into memory."""
    window = (settings.frames - 1) / settings.fps
    margin = 1 / settings.fps
    ranges = [(0.0, 0.0)] + [(start - margin, start + window + margin) for _, start in windows]
    video = read_video(entry.video, ranges_s=ranges, keep_last=True)  # length: clip_windows
    recorded = None
    if entry.cameras is not None:
        recorded = read_camera_file(entry.cameras, video.frame_count)
    ends = video  # the clip's first and last frames: references
    if reference is not entry:  # the other camera's ends (same moments: a synchronised group)
        ends = read_video(reference.video, until_s=0.0, keep_last=True)
    for name, start in windows:
        # The decoded frame nearest to each output time (and the camera that filmed it).
        times = start + np.arange(settings.frames) / settings.fps
        picks = np.abs(video.times[None, :] - times[:, None]).argmin(axis=1)
        # The reference: the clip's end farthest from the window (another time).
        centre = start + window / 2
        end = -1 if centre < video.times[-1] / 2 else 0
        cameras = cm_per_unit = moment_camera = reference_camera = None
        if recorded is not None:
            cameras = recorded.c2w[video.frame_indices[picks]]
            cm_per_unit = recorded.cm_per_unit
            # This camera at the reference's moment (the same frame when it took the reference).
            moment_camera = recorded.c2w[video.frame_indices[end]]
            reference_camera = moment_camera
        other = reference is not entry
        sample = build_sample_conditioning(
            ends.frames[end],
            video.frames[picks],
            settings=settings,
            tracker=tracker,
            cameras=cameras,
            cm_per_unit=cm_per_unit,
            reference_camera=None if other else reference_camera,
            moment_frame=video.frames[end] if other else None,
            moment_camera=moment_camera if other else None,
        )
        tensors, metadata = _sample_tensors(sample, pipeline, keep_crops)
        metadata.update(
            id=name,
            clip=entry.id,
            split=entry.split,
            reference_clip=reference.id,
            window_start_s=f"{start:.3f}",
            reference_time_s=f"{ends.times[end]:.3f}",
        )
        yield name, tensors, metadata


def _sample_tensors(sample, pipeline, keep_crops: bool) -> tuple[dict, dict]:
    """The cached tensors of one sample (latents, rays, expression inputs) and what was
    measured of it."""
    cond = sample.conditioning
    tensors = pipeline.tensors_from_conditioning(cond, "image")
    target = torch.from_numpy(sample.target_frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    samples = {
        "target_latents": pipeline.encode_video(target)[0],
        "reference_latents": pipeline.encode_video(tensors["reference"][:, :, None])[0],
        "normal_latents": pipeline.encode_video(tensors["normals"])[0],
        "ray_latents": pack_plucker(tensors["rays"].float())[0],
        "blendshapes": torch.from_numpy(cond.blendshapes).float(),
        "crop_landmarks": torch.from_numpy(cond.crop_landmarks).float(),
    }
    encoder = pipeline.expression_encoder
    if encoder.backbone is not None:  # frozen: its features are cached, not recomputed per step
        crops = tensors["expression"].to(encoder.device, encoder.dtype)
        samples["expression_features"] = encoder.pooled_features(crops)[0].float()
    if keep_crops or encoder.backbone is None:  # e.g. for another expression backbone later
        samples["crops"] = torch.from_numpy(cond.crops)
    samples = {k: v.contiguous().cpu() for k, v in samples.items()}
    expression_change = float(np.ptp(cond.blendshapes, axis=0).max())
    report = cond.report
    cameras = report.cameras
    metadata = {
        "mode": cond.mode,
        "frames": str(cond.frames),
        "height": str(cond.height),
        "width": str(cond.width),
        "expression_change": f"{expression_change:.4f}",
        "has_expression_change": str(expression_change > EXPRESSION_CHANGE).lower(),
        "has_camera_change": str(sample.camera_change).lower(),
        "camera_turn_deg": f"{cameras.camera_turn_deg:.3f}",
        "camera_move_fraction": f"{cameras.camera_move_fraction:.4f}",
        "cm_per_unit": "" if cameras.cm_per_unit is None else f"{cameras.cm_per_unit:.6g}",
        "cm_per_unit_source": cameras.cm_per_unit_source or "",
        "head_centre_drift_cm": (
            "" if cameras.head_centre_drift_cm is None else f"{cameras.head_centre_drift_cm:.3f}"
        ),
        "reprojection_px": f"{report.reprojection_px:.3f}",
        "filled_frames": str(report.clip.frames_filled),
        "has_crops": str("crops" in samples).lower(),
        "warnings": "; ".join(report.warnings),
        # What the sample covers: train records the union as the checkpoint's trained ranges.
        **{key: f"{value:.3f}" for key, value in sample_ranges(cond).items()},
    }
    return samples, metadata


def _metadata(path: Path) -> dict:
    """A sample's index row: id, file, split and mode first, then the rest by name."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = {**handle.metadata(), "file": f"samples/{path.name}"}
    first = ("id", "file", "split", "mode")
    return {
        **{key: metadata[key] for key in first if key in metadata},
        **{key: metadata[key] for key in sorted(metadata) if key not in first},
    }
