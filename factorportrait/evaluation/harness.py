"""Evaluate generated videos against what was asked of them: track each video, compare with
its conditioning (and its ground truth when there is one), write report.json and report.html.

Inputs: a folder of ``NAME.mp4`` + ``NAME.conditioning.npz`` (what ``generate
--save-conditioning`` writes) and optionally ``NAME.ground_truth.mp4``; or a JSON-lines
manifest with ``video``, ``conditioning`` and optional ``ground_truth`` and ``name`` per line
(paths relative to the manifest).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..head_pose import build_head_template, fit_proportions, load_canonical_face, place_heads
from ..io import staged_output_dir, write_json
from ..io.media import read_video
from ..tracking import FaceTracker, TrackedClip, assemble_clip, landmark_jitter
from . import metrics

SKIPPED = {
    "lpips": "skipped: LPIPS needs pretrained network weights that cannot be loaded offline",
    "fvd": "skipped: FVD needs pretrained I3D weights that cannot be loaded offline",
}
SERIES_LABELS = {
    "expression_l1": "expression error (mean |blendshape difference|)",
    "head_rotation_deg": "head-pose rotation error (degrees)",
    "head_translation_cm": "head-pose translation error (cm)",
    "camera_rotation_deg": "camera rotation error (degrees)",
    "camera_translation_rel": "camera translation error (x first distance)",
    "identity_drift": "identity drift (x eye distance)",
    "psnr_db": "PSNR against ground truth (dB)",
    "ssim": "SSIM against ground truth",
}


@dataclass(frozen=True)
class Sample:
    name: str
    video: Path
    conditioning: Path
    ground_truth: Path | None = None


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
            truth = entry.get("ground_truth")
            samples.append(
                Sample(
                    entry.get("name", video.stem),
                    video,
                    conditioning,
                    results.parent / truth if truth else None,
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
            samples.append(Sample(stem, video, conditioning, truth if truth.is_file() else None))
    else:
        raise InputError(f"--results: {results} is neither a folder nor a manifest file")
    if not samples:
        raise InputError(f"--results: no video with a matching .conditioning.npz in {results}")
    return samples


def evaluate_sample(sample: Sample, tracker: FaceTracker) -> dict:
    video = read_video(sample.video)
    with np.load(sample.conditioning, allow_pickle=False) as data:
        c2w, head_pose = data["c2w"].astype(np.float64), data["head_pose"].astype(np.float64)
        blendshapes = data["blendshapes"].astype(np.float64)
        K = data["K"].astype(np.float64) if "K" in data else None
        source_landmarks = (
            data["source_landmarks"].astype(np.float64) if "source_landmarks" in data else None
        )
        conditioning_size = data["reference"].shape[:2] if "reference" in data else None
    frames = min(len(video.frames), len(c2w))
    notes = []
    if len(video.frames) != len(c2w):
        notes.append(
            f"the video has {len(video.frames)} frames, its conditioning {len(c2w)}: "
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
    if tracked == 0:
        notes.append("no face found in the generated video: no face metrics")
    else:
        clip = assemble_clip(observations, times, name=f"video {sample.video.name}")
        if K is None:
            rotations, translations = clip.rotations, clip.translations
            notes.append(
                "the conditioning has no K: head translations are MediaPipe's own (its ~63 degree"
                " camera), so motion towards the camera is under-measured"
            )
        else:
            K = _intrinsics_for_video(K[:frames], conditioning_size, video.frames.shape[1:3])
            placed = generated_heads(clip, K, source_landmarks, tracker, sample.name)
            rotations, translations = placed[:, :3, :3], placed[:, :3, 3]
        requested = metrics.requested_head_in_camera(c2w[:frames], head_pose[:frames])
        head = metrics.head_pose_error(requested, rotations, translations)
        implied = metrics.implied_cameras(
            head_pose[:frames], rotations, translations, first_camera=c2w[0]
        )
        camera = metrics.camera_error(c2w[:frames], implied)
        series = {
            "expression_l1": metrics.expression_error(clip.blendshapes, blendshapes[:frames]),
            "head_rotation_deg": head["rotation_deg"],
            "head_translation_cm": head["translation_cm"],
            "camera_rotation_deg": camera["rotation_deg"],
            "camera_translation_rel": camera["translation_rel"],
            "identity_drift": metrics.identity_drift(clip.landmarks),
        }
        result["series"].update(series)
        result["summary"].update({name: float(np.mean(values)) for name, values in series.items()})
        result["summary"]["landmark_jitter_px"] = landmark_jitter(clip.landmarks)
    if sample.ground_truth is not None:
        truth = read_video(sample.ground_truth).frames[:frames]
        if truth.shape != video.frames[:frames].shape:
            raise InputError(
                f"{sample.name}: ground truth is {truth.shape}, the video "
                f"{video.frames[:frames].shape}"
            )
        psnr = metrics.psnr(video.frames[:frames], truth)
        result["series"]["psnr_db"] = np.minimum(psnr, 100.0)  # identical frames: capped
        result["series"]["ssim"] = metrics.ssim(video.frames[:frames], truth)
        result["summary"]["psnr_db"] = float(np.mean(result["series"]["psnr_db"]))
        result["summary"]["ssim"] = float(np.mean(result["series"]["ssim"]))
        result["summary"].update(SKIPPED)
    result["series"] = {
        k: np.asarray(v, float).round(6).tolist() for k, v in result["series"].items()
    }
    return result


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


def evaluate(results: str | Path, out: str | Path, landmarker: str | Path | None = None) -> dict:
    samples = find_samples(results)
    with FaceTracker(landmarker) as tracker:
        evaluated = [evaluate_sample(sample, tracker) for sample in samples]
    keys = sorted({k for r in evaluated for k, v in r["summary"].items() if isinstance(v, float)})
    aggregate = {
        k: float(np.mean([r["summary"][k] for r in evaluated if k in r["summary"]])) for k in keys
    }
    report = {"samples": evaluated, "aggregate": aggregate, "count": len(evaluated)}
    with staged_output_dir(out) as stage:
        write_json(stage / "report.json", report)
        (stage / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


def render_html(report: dict) -> str:
    import plotly.graph_objects as go

    charts = []
    for key, label in SERIES_LABELS.items():
        figure = go.Figure()
        for sample in report["samples"]:
            if key in sample["series"]:
                figure.add_trace(
                    go.Scatter(y=sample["series"][key], mode="lines", name=sample["name"])
                )
        if not figure.data:
            continue
        figure.update_layout(
            title=label,
            xaxis_title="frame",
            height=320,
            margin={"l": 40, "r": 10, "t": 40, "b": 40},
        )
        charts.append(
            figure.to_html(full_html=False, include_plotlyjs=True if not charts else False)
        )
    rows = "".join(
        f"<tr><td>{html.escape(s['name'])}</td><td>{s['frames']}</td>"
        f"<td>{s['face_tracked_fraction']:.0%}</td>"
        + "".join(f"<td>{s['summary'].get(k, float('nan')):.4g}</td>" for k in report["aggregate"])
        + f"<td>{html.escape('; '.join(s['notes']))}</td></tr>"
        for s in report["samples"]
    )
    header = "".join(f"<th>{html.escape(k)}</th>" for k in report["aggregate"])
    means = "".join(f"<td><b>{v:.4g}</b></td>" for v in report["aggregate"].values())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>FactorPortrait evaluation"
        "</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
        "<h1>FactorPortrait evaluation</h1>"
        f"<p>{report['count']} videos. Errors are on motion relative to the first frame; lower is "
        "better except PSNR/SSIM. LPIPS and FVD are skipped (their weights cannot be loaded "
        "offline).</p><table><tr><th>video</th><th>frames</th><th>face tracked</th>"
        f"{header}<th>notes</th></tr>{rows}<tr><td><b>mean</b></td><td></td><td></td>{means}"
        "<td></td></tr></table>" + "".join(charts) + "</body></html>"
    )
