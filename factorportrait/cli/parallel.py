"""``generate-parallel``: ``generate`` with the transformer's attention split over the processes
``torchrun`` / ``accelerate launch`` start, one per GPU (diffusers' context parallelism,
``pipelines.parallel``). Every process loads the whole model and runs the same request and
seed; the first writes the video and prints, the others write nothing. README: Training,
"Generation on several GPUs".

Registered by ``cli.main`` (``parallel.register``); also runs on its own:
``torchrun --nproc_per_node 2 -m factorportrait.cli.parallel [--split ulysses] <generate's
arguments>``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

from ..errors import InputError

SPLITS = ("ulysses", "ring")


def register(commands) -> None:
    """The command: generate's own arguments (generate.register builds them) and --split."""
    made = []

    class _Renamed:  # hands generate.register our parser under its name
        def add_parser(self, _name, **_options):
            made.append(
                commands.add_parser(
                    "generate-parallel",
                    help="generate with the transformer split over processes (torchrun)",
                    description="`generate` with the transformer's attention split over the "
                    "processes torchrun or accelerate launch start (diffusers' context "
                    "parallelism); the same arguments, and --split.",
                )
            )
            return made[0]

    from . import generate

    generate.register(_Renamed())
    made[0].add_argument(
        "--split",
        choices=SPLITS,
        default="ulysses",
        help="ulysses (all-to-all over the attention heads; the heads must divide by the "
        "processes) or ring (key/value blocks passed round; GPU attention backends only)",
    )
    made[0].set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from ..engines import checked_engine, default_engine, engine_info
    from ..pipelines.parallel import enable_context_parallel, init_distributed
    from . import generate

    request = args
    if getattr(request, "offload", None) not in (None, False, "none"):
        raise InputError("--offload: not with generate-parallel (each process holds the model)")
    engine = checked_engine(request.engine or default_engine())
    if not engine_info(engine).needs_model:
        raise InputError(f"generate-parallel: the {engine} engine has no transformer to split")
    rank, world = init_distributed()

    def split(model) -> None:
        enable_context_parallel(model.transformer, args.split)
        config = model.transformer._parallel_config.context_parallel_config  # diffusers' own
        print(  # (the first process's is shown)
            f"context parallel over {world} processes: ring {config.ring_degree}, "
            f"ulysses {config.ulysses_degree}"
        )

    try:
        if rank == 0:
            return generate.run(request, loaded=split)
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
            request.out = Path(scratch) / Path(request.out).name  # the first process writes
            return generate.run(request, loaded=split)
    finally:
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m factorportrait.cli.parallel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate-parallel", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args) or 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
