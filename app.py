"""FactorPortrait web demo (Gradio Blocks). Also the Hugging Face Space's app_file.

Current state: the viewpoint factor only. Pick a camera preset and see its path around the
head; the upload / preview / generate UI arrives with the web-app issue. Wiring only: the work
is done in the factorportrait package.
"""

from __future__ import annotations

import gradio as gr

from factorportrait import MODES
from factorportrait.camera import load_presets, trajectory_figure
from factorportrait.config import VIDEO

PRESETS = load_presets()  # read once at start-up; never mutated per request


def show_preset(name: str):
    trajectory = PRESETS[name]
    K, c2w = trajectory.sample(VIDEO.frames).cameras(VIDEO.height, VIDEO.width)
    return trajectory_figure(K, c2w, VIDEO.height, VIDEO.width), trajectory.description


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="FactorPortrait") as demo:
        gr.Markdown(
            "# FactorPortrait\n"
            "Controllable portrait animation: expression, head pose and viewpoint as separate "
            f"controls, in four modes ({', '.join(f'`{m}`' for m in MODES)}).\n\n"
            "**Status:** this page shows the camera trajectories only. Portrait upload, "
            "previews and generation are not built yet, and no trained FactorPortrait "
            "checkpoint exists publicly (see README)."
        )
        names = list(PRESETS)
        preset = gr.Dropdown(
            names, value="orbit" if "orbit" in names else names[0], label="Camera preset"
        )
        description = gr.Markdown()
        plot = gr.Plot(label="Camera path around the head")
        preset.change(show_preset, preset, [plot, description])
        demo.load(show_preset, preset, [plot, description])
    return demo


if __name__ == "__main__":
    # Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (default 127.0.0.1:7860).
    build_demo().queue(default_concurrency_limit=4).launch()
