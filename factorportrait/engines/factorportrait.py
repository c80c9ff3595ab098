"""The `factorportrait` engine: the paper's own diffusion model (``pipelines``: the pipeline,
its checkpoints and generation with it) behind the one engine interface."""

from __future__ import annotations

from . import FACTORPORTRAIT, engine_info
from .protocol import EngineRuntime, diffusion_callback

# How the page names a checkpoint's training status.
TRAINING_STATUS = {
    "untrained": "**UNTRAINED (tiny random): generation makes noise**",
    "wan-initialised": "**not trained yet (Wan-initialised): output is not a "
    "FactorPortrait result**",
    "trained": "trained",
}


def status_markdown(checkpoint: str | None, training_status: str | None, device: str) -> str:
    """The checkpoint and device line at the top of the page (``training_status`` None: no
    checkpoint loaded)."""
    if training_status is None:
        return (
            f"**Checkpoint:** no FactorPortrait checkpoint loaded (none is public yet; "
            f"README: Training makes one), so its previews work and its generation does not. "
            f"Set `FACTORPORTRAIT_CHECKPOINT` to a pipeline folder or Hub id and restart. "
            f"**Device:** {device}."
        )
    label = TRAINING_STATUS.get(training_status, training_status)
    return f"**Checkpoint:** `{checkpoint}` ({label}). **Device:** {device}."


class FactorPortraitEngine(EngineRuntime):
    """FactorPortrait's own pipeline behind the one engine interface."""

    pipeline_class = "FactorPortraitPipeline"
    info = engine_info(FACTORPORTRAIT)

    def estimate(self, frames, size, steps, guidance):
        from ..planning.cost import estimate_generation, zerogpu_duration

        cost = estimate_generation(frames, size, size, steps, guidance)
        return {**cost, "zerogpu_s": zerogpu_duration(frames, steps)}

    def load(self, checkpoint, *, device="auto", revision=None, **options):
        from ..pipelines.generation import load_pipeline

        return load_pipeline(checkpoint, device=device, revision=revision)

    def status_markdown(self, model, checkpoint, *, cuda):
        if model is None:
            return status_markdown(checkpoint, None, "CUDA GPU" if cuda else "CPU")
        status = model.transformer.config.training_status
        return status_markdown(checkpoint, status, str(model.device))

    def describe(self, model):
        return "factorportrait (FactorPortrait checkpoint)"

    def notices(self, model, cond=None):
        if not model.untrained:
            return []
        status = model.transformer.config.training_status
        return [
            f"checkpoint {model.name_or_path} is untrained ({status}): the video is noise and "
            "is labelled so"
        ]

    def device(self, model):
        return str(model.device)

    def make_tiny_checkpoint(self, folder, seed=0):
        from ..pipelines.checkpoints import make_tiny_checkpoint

        make_tiny_checkpoint(folder, seed=seed)
        return "tiny RANDOM checkpoint (untrained, output is noise)"

    def warnings(self, cond, trajectory, model):
        from ..planning.guardrails import ranges_of_checkpoint, request_warnings

        return request_warnings(cond, trajectory, ranges_of_checkpoint(model))

    def generate(self, model, cond, *, steps, guidance, seed, report=None, should_stop=None):
        from ..pipelines.generation import generate_frames

        if report is not None:
            report(0, steps, "encoding")
        return generate_frames(
            model,
            cond,
            steps=steps,
            guidance=guidance,
            seed=seed,
            callback=diffusion_callback(steps, steps, report, should_stop),
            warn=False,  # the caller reports ``warnings`` in its own words
        )
