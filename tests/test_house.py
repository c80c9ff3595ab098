"""House rules that a reader cannot check by eye across the whole tree."""

from __future__ import annotations

import ast
from pathlib import Path

from factorportrait.modes import MODES, Mode

ROOT = Path(__file__).resolve().parents[1]


def _comparisons_naming(
    source: str, names: set[str], constants: set[str] = frozenset()
) -> list[int]:
    """Line numbers of comparisons with, on either side (directly, or inside a tuple, list or
    set compared with ``in``), a string literal among ``names`` or a name or attribute among
    ``constants``."""

    def names_one(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, ast.Name):
            return node.id in constants
        if isinstance(node, ast.Attribute):
            return node.attr in constants
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names_one(element) for element in node.elts)
        return False

    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Compare)
        and any(names_one(side) for side in (node.left, *node.comparators))
    ]


def _mode_name_comparisons(source: str) -> list[int]:
    """Comparisons that involve a mode name as a string literal."""
    return _comparisons_naming(source, set(MODES))


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


# The engine constants of factorportrait.engines, by the names code imports them under.
ENGINE_CONSTANTS = {"FACTORPORTRAIT", "WAN_ANIMATE", "GEOMETRY", "ENGINE_NAME"}


def _engine_name_comparisons(source: str) -> list[int]:
    """Comparisons that involve an engine's name: a string literal naming an engine, or one of
    the engine constants."""
    from factorportrait.engines import ENGINES

    return _comparisons_naming(source, set(ENGINES), ENGINE_CONSTANTS)


def test_no_module_outside_the_engines_compares_engine_names():
    """Issue 26: the CLI, the web service, the HTTP API and ``ablate`` reach every engine
    through the registry and its one interface (engines.protocol); only the engines' own
    package knows them by name."""
    engines = ROOT / "factorportrait" / "engines"
    files = [ROOT / "app.py", *sorted((ROOT / "factorportrait").rglob("*.py"))]
    found = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if engines not in path.parents
        and (lines := _engine_name_comparisons(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"ask the engine's registry entry or runtime instead: {found}"


def test_the_engine_scan_finds_what_it_forbids():
    assert _engine_name_comparisons('if engine == "geometry":\n    pass\n') == [1]
    assert _engine_name_comparisons("ok = engine != WAN_ANIMATE\n") == [1]
    assert _engine_name_comparisons("ok = run.engine in (FACTORPORTRAIT, 'x')\n") == [1]
    assert _engine_name_comparisons("ok = engines.GEOMETRY == name\n") == [1]
    assert _engine_name_comparisons("ok = engine_info(engine).needs_model\n") == []
    assert _engine_name_comparisons("ok = engine in ENGINES\n") == []


def test_every_engine_implements_the_one_interface():
    """Each registry entry's runtime is an EngineRuntime that overrides what every engine
    must say for itself (the base class raises for those)."""
    from factorportrait.engines import REGISTRY, engine_runtime
    from factorportrait.engines.protocol import EngineRuntime

    own = ("estimate", "status_markdown", "describe", "generate")
    for name, info in REGISTRY.items():
        runtime = engine_runtime(name)
        assert isinstance(runtime, EngineRuntime) and runtime.info is info, name
        missing = [m for m in own if getattr(type(runtime), m) is getattr(EngineRuntime, m)]
        assert missing == [], f"{name} does not implement {missing}"
        assert bool(info.preview_videos) == bool(
            type(runtime).preview_videos is not EngineRuntime.preview_videos
        ), name


# Issue 30: a module longer than this is split along its jobs, unless it is long for a reason
# it states at its top (a table of constants, say) with this marker.
MAX_MODULE_LINES = 450
LONG_FOR_A_REASON = "Long for a reason:"
MAX_ROOT_MODULES = 9


def _oversized(files, root: Path = ROOT) -> dict[str, int]:
    found = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES and LONG_FOR_A_REASON not in "\n".join(text.splitlines()[:12]):
            found[str(path.relative_to(root))] = lines
    return found


def test_no_product_module_is_over_450_lines_without_saying_why():
    files = [ROOT / "app.py", *sorted((ROOT / "factorportrait").rglob("*.py"))]
    assert _oversized(files) == {}, "split these along their jobs, or say at the top why not"


def test_the_size_rule_sees_a_long_module(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    reasoned = tmp_path / "table.py"
    reasoned.write_text(f'"""{LONG_FOR_A_REASON} a table."""\n' + "x = 1\n" * MAX_MODULE_LINES)
    assert _oversized([long, reasoned], tmp_path) == {"long.py": MAX_MODULE_LINES + 1}


def test_the_package_root_holds_only_what_everything_shares():
    """At most nine modules loose at the package root; the rest live in their rooms."""
    loose = sorted(p.name for p in (ROOT / "factorportrait").glob("*.py"))
    assert len(loose) <= MAX_ROOT_MODULES, loose
