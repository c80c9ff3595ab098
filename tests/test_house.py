"""House rules that a reader cannot check by eye across the whole tree."""

from __future__ import annotations

import ast
from pathlib import Path

from factorportrait.modes import MODES, Mode

ROOT = Path(__file__).resolve().parents[1]


def _mode_name_comparisons(source: str) -> list[int]:
    """Line numbers of comparisons that involve a mode name as a string literal (directly, or
    inside a tuple/list/set compared with ``in``)."""

    def names_a_mode(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in MODES
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names_a_mode(element) for element in node.elts)
        return False

    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Compare)
        and any(names_a_mode(side) for side in (node.left, *node.comparators))
    ]


def test_no_module_but_the_mode_type_compares_mode_names():
    files = [ROOT / "app.py", *sorted((ROOT / "factorportrait").rglob("*.py"))]
    found = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if path.name != "modes.py"
        and (lines := _mode_name_comparisons(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"compare Mode properties instead of mode names: {found}"


def test_the_scan_finds_what_it_forbids():
    """The rule's own check sees each form it forbids, and not a Mode property."""
    assert _mode_name_comparisons('if mode == "camera-only":\n    pass\n') == [1]
    assert _mode_name_comparisons('ok = mode in ("camera-only", "all-dynamic")\n') == [1]
    assert _mode_name_comparisons('ok = "novel-dynamic" != settings.mode\n') == [1]
    assert _mode_name_comparisons("ok = mode.moving_camera\n") == []


def test_the_mode_type_knows_what_each_mode_needs():
    needs = {m.value: (m.needs_driving, m.moving_camera, m.novel_view) for m in Mode}
    assert needs == {
        "frontal-dynamic": (True, False, False),
        "novel-dynamic": (True, False, True),
        "camera-only": (False, True, False),
        "all-dynamic": (True, True, False),
    }
    assert Mode.parse("all-dynamic") is Mode.ALL_DYNAMIC and str(Mode.CAMERA_ONLY) == "camera-only"
