"""report.html: the page of ``harness.evaluate``'s report, one row per video with its summary
and the means over all (a mean over fewer videos than all says so), then each per-frame series
(expression, pose, camera, identity, image errors) as a chart with a line per video.
"""

from __future__ import annotations

import html

from .identity import (
    ARCFACE_CSIM_KEY,
    DLIB_DISTANCE_KEY,
    DLIB_SAME_PERSON_DISTANCE,
    DLIB_SAME_PERSON_KEY,
)

HIGHER_IS_BETTER = (
    "psnr_db",
    "ssim",
    ARCFACE_CSIM_KEY,
    DLIB_SAME_PERSON_KEY,
    "face_tracked_fraction",
)
SERIES_LABELS = {
    "expression_l1": "expression error (mean |blendshape difference|)",
    "head_rotation_deg": "head-pose rotation error (degrees)",
    "head_translation_cm": "head-pose translation error (cm)",
    "camera_rotation_deg": "camera rotation error (degrees)",
    "camera_translation_rel": "camera translation error (x first distance)",
    "identity_drift": "identity drift (x eye distance)",
    DLIB_DISTANCE_KEY: (
        "identity: dlib descriptor distance to the portrait (dlib's rule: the same person "
        f"below {DLIB_SAME_PERSON_DISTANCE}; not a CSIM)"
    ),
    ARCFACE_CSIM_KEY: "identity: ArcFace CSIM with the portrait (cosine)",
    "view_consistency_cm": "view consistency: 3D face vs requested cameras (cm)",
    "shape_rigidity_cm": "3D face shape change after a rigid fit (cm)",
    "psnr_db": "PSNR against ground truth (dB)",
    "ssim": "SSIM against ground truth",
    "lpips": "LPIPS against ground truth",
}


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
        if key == DLIB_DISTANCE_KEY:  # dlib's rule: the same person below the line
            figure.add_hline(y=DLIB_SAME_PERSON_DISTANCE, line_dash="dot")
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
        + "".join(f"<td>{_number(s['summary'].get(k))}</td>" for k in report["aggregate"])
        + f"<td>{html.escape('; '.join(s['notes']))}</td></tr>"
        for s in report["samples"]
    )
    header = "".join(f"<th>{html.escape(k)}</th>" for k in report["aggregate"])
    count, measured = report["count"], report.get("measured", {})
    means = "".join(
        f"<td><b>{value:.4g}</b>"
        + (f" ({measured[key]} of {count})" if measured.get(key, count) != count else "")
        + "</td>"
        for key, value in report["aggregate"].items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>FactorPortrait evaluation"
        "</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
        "<h1>FactorPortrait evaluation</h1>"
        f"<p>{report['count']} videos. Errors are on motion relative to the first frame; lower is "
        "better except PSNR, SSIM, arcface_csim and dlib_same_person_share. Identity is named "
        "by the embedder that measured it: dlib_distance is dlib's descriptor distance to the "
        f"portrait (dlib's rule: the same person below {DLIB_SAME_PERSON_DISTANCE}), "
        "dlib_same_person_share the share of frames under it; only arcface_csim is the CSIM "
        "papers quote. LPIPS and FVD are measured only "
        "when their networks are given (else marked skipped).</p><table><tr><th>video</th><th>frames</th><th>face tracked</th>"
        f"{header}<th>notes</th></tr>{rows}<tr><td><b>mean</b></td><td></td><td></td>{means}"
        "<td></td></tr></table>" + "".join(charts) + "</body></html>"
    )


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-"
