"""The web app builds (without launching a server) and wires the viewpoint factor."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_app():
    spec = importlib.util.spec_from_file_location("factorportrait_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_builds_and_shows_every_preset():
    app = _load_app()
    demo = app.build_demo()
    assert demo.title == "FactorPortrait"
    for name in app.PRESETS:
        figure, description = app.show_preset(name)
        assert description == app.PRESETS[name].description
        assert any(trace.name == "path" for trace in figure.data)
