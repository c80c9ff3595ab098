"""Evaluation: what the paper claims, measured on generated videos (metrics.py: pure functions
with known answers; harness.py: tracking, per-sample evaluation, reports)."""
