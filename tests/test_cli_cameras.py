"""`python -m factorportrait` and its `cameras` command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from factorportrait.cli import build_parser, main
from factorportrait.viewpoint import load_preset, orbit_c2w, preset_names

OUTPUTS = {"trajectory.json", "rays.mp4", "trajectory.html"}


def _run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "factorportrait", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_lists_every_subcommand_and_each_has_help():
    result = _run("--help")
    assert result.returncode == 0
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"cameras", "presets", "bench"} <= set(commands)
    for name in commands:
        assert name in result.stdout
        sub = _run(name, "--help")
        assert sub.returncode == 0 and "usage: python -m factorportrait " + name in sub.stdout


@pytest.mark.parametrize("name", preset_names())
def test_cameras_writes_the_three_files_for_every_preset(tmp_path, name, capsys):
    out = tmp_path / name
    assert (
        main(["cameras", "--preset", name, "--frames", "9", "--size", "64", "--out", str(out)]) == 0
    )
    assert {p.name for p in out.iterdir()} == OUTPUTS
    record = json.loads((out / "trajectory.json").read_text())
    assert record["frames"] == 9 and record["height"] == record["width"] == 64
    assert record["trajectory"] == load_preset(name).model_dump(mode="json")
    K, c2w = np.array(record["K"]), np.array(record["c2w"])
    assert K.shape == (9, 3, 3) and c2w.shape == (9, 4, 4)
    views = record["per_frame"]
    np.testing.assert_allclose(
        c2w, orbit_c2w(views["azimuth"], views["elevation"], views["distance"], views["roll"])
    )
    assert (out / "rays.mp4").stat().st_size > 1000
    html = (out / "trajectory.html").read_text()
    assert "plotly" in html and name in html
    assert str(out / "rays.mp4") in capsys.readouterr().out


def test_cameras_default_size_and_a_user_file(tmp_path):
    trajectory = tmp_path / "my path ü.json"
    trajectory.write_text(load_preset("sweep").model_copy(update={"name": "mine"}).to_json())
    result = _run("cameras", "--camera", str(trajectory), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "o" / "trajectory.json").read_text())
    assert (record["frames"], record["height"], record["width"]) == (49, 512, 512)
    assert record["trajectory"]["name"] == "mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "no-such"], "error: camera: 'no-such' is neither a preset"),
        (["--preset", "orbit", "--frames", "50"], "error: frames: 50 is not of the form 4k+1"),
        (["--preset", "orbit", "--frames", "-3"], "error: frames: -3 is outside"),
        (["--preset", "orbit", "--size", "500"], "error: size: 500 is not a multiple of 16"),
        (["--preset", "orbit", "--size", "99999"], "error: size: 99999 is outside"),
        (["--preset", "orbit", "--size", "big"], "error: size: 'big' is not S or WxH"),
        (["--preset", "orbit", "--fps", "nan"], "error: fps: expected a finite number, got nan"),
        (["--preset", "orbit", "--frames", "x"], "error: argument --frames: invalid int value"),
        (["--frames", "9"], "error: the following arguments are required: --preset"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = _run("cameras", *args, "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_trajectory_file_names_the_field(tmp_path):
    bad = json.loads(load_preset("orbit").to_json())
    bad["keyframes"][3]["fov"] = 500
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = _run("cameras", "--camera", str(path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: bad.json: keyframes[3].fov: input should be less than or equal to 120 (got 500)"
    )
    assert not (tmp_path / "o").exists()


def test_presets_command_lists_descriptions(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in preset_names():
        assert f"{name} " in out and load_preset(name).description in out


@pytest.mark.parametrize("preset, status", [("orbit", 0), ("no-such-path", 2)])
def test_the_command_line_exits_with_its_status_its_output_and_its_exit_handlers(
    tmp_path, preset, status
):
    """`python -m factorportrait` leaves without the interpreter's teardown: still with the
    command's status, all of its output through a pipe (block-buffered), its other threads
    joined (thread pools rely on that) and the exit handlers run (logging, temporary folders),
    what they print included."""
    handler_ran, thread_ended = tmp_path / "handler-ran", tmp_path / "thread-ended"
    script = (
        "import atexit, sys, threading, time\n"
        f"atexit.register(lambda: open({str(handler_ran)!r}, 'w').write('yes'))\n"
        "atexit.register(lambda: print('said at exit'))\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(thread_ended)!r}, 'w').write('yes')\n"
        "import factorportrait.__main__ as entry\n"
        "command = entry.main\n"
        "def command_leaving_a_thread(argv):\n"  # still running when the command returns
        "    code = command(argv)\n"
        "    threading.Thread(target=late).start()\n"
        "    return code\n"
        "entry.main = command_leaving_a_thread\n"
        "entry.run(sys.argv[1:])\n"
        "print('run returned')\n"  # it must not: run exits
    )
    out = tmp_path / "cameras"
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    args = ["cameras", "--preset", preset, "--frames", "5", "--size", "32", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=buffered,
    )
    assert result.returncode == status, result.stderr
    assert handler_ran.read_text() == "yes" and thread_ended.read_text() == "yes"
    assert "run returned" not in result.stdout
    assert result.stdout.rstrip().endswith("said at exit")  # after the command's own lines
    if status == 0:
        assert "trajectory.html\n" in result.stdout  # the command's last line got out
    else:
        assert result.stderr.startswith("error: camera: 'no-such-path'")


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`python -m factorportrait cameras ... | head -1`, the reader gone before the first line:
    the command's files are written, it ends with status 1 and no traceback."""
    out = tmp_path / "cameras"
    args = ["cameras", "--preset", "orbit", "--frames", "5", "--size", "32", "--out", str(out)]
    child = subprocess.Popen(
        [sys.executable, "-m", "factorportrait", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child.stdout.close()  # before the command can print anything: it imports for a second
    errors = child.stderr.read()
    assert child.wait(timeout=120) == 1, errors
    assert "Traceback" not in errors, errors
    assert {path.name for path in out.iterdir()} == OUTPUTS


def test_a_broken_pipe_of_the_commands_own_is_an_error_not_a_quiet_exit():
    """Only standard output's reader leaving is taken quietly; a BrokenPipeError from anything
    else (a worker's pipe, say) is an error with its traceback."""
    script = (
        "import factorportrait.__main__ as entry\n"
        "def command(argv):\n"
        "    raise BrokenPipeError('a worker went away')\n"
        "entry.main = command\n"
        "entry.run([])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "BrokenPipeError: a worker went away" in result.stderr
