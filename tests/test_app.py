"""app.py: wiring only. It builds without a checkpoint, loads the tiny one, imports spaces first."""

import ast
import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_app():
    spec = importlib.util.spec_from_file_location("factorportrait_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spaces_is_imported_before_anything_else():
    tree = ast.parse((ROOT / "app.py").read_text())
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    first = imports[0]
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__"
    assert isinstance(imports[1], ast.Import) and imports[1].names[0].name == "spaces"


def test_builds_without_a_checkpoint_and_with_the_tiny_one():
    app = _load_app()
    service = app.create_service(None)
    assert (
        service.pipeline is None
        and "no FactorPortrait checkpoint loaded" in service.status_markdown()
    )
    demo = app.build_demo(service)
    assert demo.title == "FactorPortrait"
    tiny = app.create_service(None, tiny=True)
    assert tiny.pipeline.untrained and "UNTRAINED" in tiny.status_markdown()
    # Both tiny engines are loaded; the page starts on FactorPortrait unless told otherwise.
    assert tiny.wan_animate is not None
    assert tiny.engine == "factorportrait" or os.environ.get("FACTORPORTRAIT_ENGINE")
