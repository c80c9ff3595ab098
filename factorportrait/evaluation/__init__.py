"""Evaluation: what the paper claims, measured on generated videos (metrics.py: pure functions
with known answers; identity.py: identity kept, as dlib's descriptor distance and same-person
share or as ArcFace CSIM; realism.py: LPIPS and FVD when their networks are given; harness.py:
tracking, per-sample evaluation, reports, with report_page.py drawing report.html;
ablation.py: several checkpoints or engines run on one held-out set, and ablation_report.py:
their results side by side)."""
