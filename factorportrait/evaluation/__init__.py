"""Evaluation: what the paper claims, measured on generated videos (metrics.py: pure functions
with known answers; identity.py: identity kept, as dlib's descriptor distance and same-person
share or as ArcFace CSIM; realism.py: LPIPS and FVD when their networks are given; harness.py:
tracking, per-sample evaluation, reports; ablation.py: several checkpoints or engines on one
held-out set, side by side)."""
