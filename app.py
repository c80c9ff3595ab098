"""FactorPortrait web demo (Gradio Blocks); also the Hugging Face Space's app_file.

    python app.py                                  # previews only, no checkpoint
    FACTORPORTRAIT_CHECKPOINT=path/or/hub-id python app.py
    python app.py --tiny                           # tiny RANDOM pipelines of both engines
    FACTORPORTRAIT_WAN_ANIMATE_CHECKPOINT=Wan-AI/Wan2.2-Animate-14B-Diffusers python app.py
    FACTORPORTRAIT_ENGINE=wan-animate ...          # the engine the page starts with

With no FactorPortrait checkpoint on a CUDA GPU, the public wan-animate engine is loaded from the
Hub and chosen; on a CPU the page says what is missing.

The two engines (factorportrait, wan-animate) are described in README: Engines.

Listens on 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise.
Wiring only: the work is done in factorportrait.ui and the package below it.
"""

from __future__ import annotations

import spaces  # noqa: F401  (must come before anything touches CUDA, for ZeroGPU)

# isort: split
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from factorportrait.config import LIMITS
from factorportrait.errors import InputError
from factorportrait.ui.blocks import PAGE_CSS, PAGE_JS, build_demo
from factorportrait.ui.service import Service


def create_service(
    checkpoint: str | None,
    *,
    revision: str | None = None,
    device: str = "auto",
    tiny: bool = False,
    landmarker: str | None = None,
    wan_animate_checkpoint: str | None = None,
    engine: str | None = None,
    offload: str = "auto",
    lora: str | None = None,
    lora_weight_name: str | None = None,
) -> Service:
    """Loads each engine's model once, at start-up: a FactorPortrait ``checkpoint`` and a
    Wan2.2-Animate ``wan_animate_checkpoint`` (``tiny``: tiny random ones of both). With no
    FactorPortrait checkpoint on a CUDA GPU the public wan-animate engine is loaded and chosen
    (``startup_plan``). ``engine`` is the page's default; ``offload`` (auto: by the card's
    memory) and ``lora`` (a few-step LoRA) concern wan-animate."""
    import torch

    from factorportrait.engines.wan_animate.loading import (
        auto_offload,
        load_wan_animate,
        startup_plan,
        tiny_wan_animate_pipeline,
    )
    from factorportrait.pipelines.generation import load_pipeline, resolve_device

    target = resolve_device(device)
    cuda = target.type == "cuda"
    plan = startup_plan(
        "tiny" if tiny else checkpoint,
        "tiny" if tiny else wan_animate_checkpoint,
        engine,
        cuda=cuda,
    )
    if plan.note:
        logging.getLogger("factorportrait").info(plan.note)
    engine = plan.engine
    if tiny:
        from factorportrait.pipelines.checkpoints import make_tiny_checkpoint

        checkpoint = str(make_tiny_checkpoint(tempfile.mkdtemp(prefix="factorportrait-tiny-")))
    pipeline = None
    if checkpoint:
        pipeline = load_pipeline(checkpoint, device=device, revision=revision)
    wan_animate = None
    wan_animate_checkpoint = plan.wan_animate_checkpoint
    if tiny:
        wan_animate = tiny_wan_animate_pipeline()
        wan_animate_checkpoint = "tiny random (built at start-up)"
        wan_animate.to(target)
    elif wan_animate_checkpoint:
        if offload == "auto":
            memory = torch.cuda.get_device_properties(target).total_memory if cuda else None
            offload = auto_offload(None if memory is None else memory / 2**30)
        wan_animate = load_wan_animate(
            wan_animate_checkpoint,
            device=device,
            revision=revision,
            offload=offload,
            lora=lora,
            lora_weight_name=lora_weight_name,
        )
    service = Service(
        pipeline=pipeline,
        checkpoint="tiny random (built at start-up)" if tiny else checkpoint,
        landmarker=landmarker,
        wan_animate=wan_animate,
        wan_animate_checkpoint=wan_animate_checkpoint if wan_animate is not None else None,
        engine=engine,
    )
    # Where request outputs live until Gradio has copied them, and for how long (tests).
    if os.environ.get("FACTORPORTRAIT_OUTPUT_DIR"):
        service.output_root = Path(os.environ["FACTORPORTRAIT_OUTPUT_DIR"])
        service.output_root.mkdir(parents=True, exist_ok=True)
    if os.environ.get("FACTORPORTRAIT_OUTPUT_TTL_S"):
        service.output_ttl_s = max(1.0, float(os.environ["FACTORPORTRAIT_OUTPUT_TTL_S"]))
    return service


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FactorPortrait web demo")
    parser.add_argument(
        "--checkpoint",
        default=os.environ.get("FACTORPORTRAIT_CHECKPOINT"),
        help="pipeline folder or Hub id (default: $FACTORPORTRAIT_CHECKPOINT)",
    )
    parser.add_argument(
        "--revision",
        default=os.environ.get("FACTORPORTRAIT_REVISION"),
        help="Hub revision (default: $FACTORPORTRAIT_REVISION)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="build and load a tiny RANDOM checkpoint (its output is noise)",
    )
    parser.add_argument(
        "--wan-animate-checkpoint",
        default=os.environ.get("FACTORPORTRAIT_WAN_ANIMATE_CHECKPOINT"),
        help="the wan-animate engine's WanAnimatePipeline folder or Hub id, e.g. "
        "Wan-AI/Wan2.2-Animate-14B-Diffusers (default: $FACTORPORTRAIT_WAN_ANIMATE_CHECKPOINT)",
    )
    parser.add_argument(
        "--engine",
        default=None,
        help="the engine the page starts with: factorportrait or wan-animate "
        "(default: $FACTORPORTRAIT_ENGINE, else factorportrait)",
    )
    parser.add_argument(
        "--offload",
        choices=["auto", "none", "model", "group"],
        default=os.environ.get("FACTORPORTRAIT_WAN_ANIMATE_OFFLOAD", "auto"),
        help="wan-animate on CUDA: auto (by the card's memory), none, model or group "
        "(default: $FACTORPORTRAIT_WAN_ANIMATE_OFFLOAD, else auto)",
    )
    parser.add_argument(
        "--lora",
        default=os.environ.get("FACTORPORTRAIT_WAN_ANIMATE_LORA"),
        help="wan-animate: a few-step distillation LoRA, Hub id or file (README: Engines; "
        "default: $FACTORPORTRAIT_WAN_ANIMATE_LORA, else none)",
    )
    parser.add_argument(
        "--lora-weight-name",
        default=os.environ.get("FACTORPORTRAIT_WAN_ANIMATE_LORA_WEIGHT"),
        help="the LoRA's file in its Hub repo (default: $FACTORPORTRAIT_WAN_ANIMATE_LORA_WEIGHT)",
    )
    parser.add_argument("--device", default=os.environ.get("FACTORPORTRAIT_DEVICE", "auto"))
    args = parser.parse_args(argv)
    # The package's own messages (a generation cancelled or stopped) go to the server's log.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    package_log = logging.getLogger("factorportrait")
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    try:
        service = create_service(
            args.checkpoint,
            revision=args.revision,
            device=args.device,
            tiny=args.tiny,
            landmarker=os.environ.get("FACTORPORTRAIT_FACE_LANDMARKER"),
            wan_animate_checkpoint=args.wan_animate_checkpoint,
            engine=args.engine,
            offload=args.offload,
            lora=args.lora,
            lora_weight_name=args.lora_weight_name,
        )
    except InputError as exc:
        sys.exit(f"error: {exc}")
    demo = build_demo(service)
    demo.queue(default_concurrency_limit=2, max_size=32).launch(
        max_file_size=LIMITS.max_video_bytes,
        allowed_paths=[],  # nothing on disk is served but what the app itself returns
        show_error=True,
        css=PAGE_CSS,
        js=PAGE_JS,
    )


if __name__ == "__main__":
    main()
