"""FactorPortrait's own diffusion pipeline, as diffusers keeps pipelines apart from models:
the pipeline class (``pipeline_factorportrait``), its checkpoints (tiny random ones, a start
from Wan2.1, digests) and generation with it (load, sample, label, write). The engine that
the surfaces reach is ``engines.factorportrait``; training and the toy world use this room
directly. Nothing is imported here, so that reading the engine registry loads no torch."""
