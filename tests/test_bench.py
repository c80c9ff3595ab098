"""The bench command runs every stage and writes the figures other tools read (timings are
printed, never asserted: this machine is noisy)."""

import json

from factorportrait.benchmarks import cpu
from factorportrait.cli import main


def test_bench_writes_the_required_keys(tmp_path, landmarker_path, capsys):
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.md"
    code = main(
        [
            "bench",
            "--frames",
            "5",
            "--size",
            "64",
            "--repeats",
            "1",
            "--landmarker",
            str(landmarker_path),
            "--json",
            str(out),
            "--markdown",
            str(table),
        ]
    )
    assert code == 0
    figures = json.loads(out.read_text())
    for key in (
        "tracking_ms_per_frame",
        "render_fps_256",
        "render_fps_512",
        "render_fps_1024",
        "rays_ms_per_frame",
        "preview_5f_64_s",
        "preview_with_files_5f_64_s",
        "preview_ui_5f_64_s",
        "render_fps_64_in_preview",
        "tiny_vae_encode_s",
        "tiny_vae_decode_s",
        "tiny_denoise_step_s",
        "render_fps_geometry_512",
        "render_fps_geometry_64",
        "geometry_generate_5f_64_s",
    ):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["settings"] == {"frames": 5, "size": 64, "repeats": 1}
    stages = figures["stages"]
    # The rasteriser inside the preview is the conditioning report's normals stage, per frame.
    assert figures["render_fps_64_in_preview"] == 5 / stages["normals"]["median_s"]
    # Writing the files comes on top of building the conditioning.
    assert (
        stages["= preview incl. writing files"]["median_s"]
        > stages["= conditioning (API call)"]["median_s"]
    )
    assert figures["preview_ui_5f_64_s"] == stages["= preview in the web service"]["median_s"]
    geometry = stages["geometry engine render at 512"]["median_s"]
    assert figures["render_fps_geometry_512"] == 5 / geometry
    markdown = table.read_text()
    for key in ("render_fps_512", "render_fps_64_in_preview", "preview_ui_5f_64_s"):
        assert f"| `{key}` |" in markdown
    assert "tiny denoising step" in capsys.readouterr().out


def test_the_model_step_compares_plain_wan_with_both_modulation_paths():
    rows = cpu.model_benchmark("tiny", 5, 32, 32, repeats=2, device="cpu")
    assert [name for name, _, _ in rows] == [
        "plain Wan transformer",
        "FactorPortrait, per-token modulation",
        "FactorPortrait, per-frame modulation",
    ]
    for name, times, peak in rows:
        assert len(times) == 2 and min(times) > 0, name
        assert peak is None, name  # GPU memory is read on CUDA only
