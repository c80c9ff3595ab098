"""A real browser (Debian's headless chromium, driven by Playwright) uses the launched app:
uploads the examples, walks through the four modes, runs a preview, saves a screenshot; starts
a generation and cancels it."""

import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import wait_for

from factorportrait.engines import engine_info

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".cache" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (bash .ci/run installs it with apt-get)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def _open_page(browser, app_url, width: int, height: int):
    """A fresh tab on the app (its own Gradio session) that collects the page's errors."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_url, wait_until="networkidle")
    page.errors = errors
    return page


@pytest.fixture
def page(browser, app_url):
    """A tall tab: the whole page without scrolling."""
    page = _open_page(browser, app_url, 1400, 2400)
    yield page
    page.close()


def _no_error_shown(page):
    toasts = page.locator(".toast-body.error, .toast-wrap .error")
    assert toasts.count() == 0, toasts.all_inner_texts()
    assert not page.errors, page.errors


def test_upload_switch_modes_and_preview(page, app_server):
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.set_input_files("#driving input[type=file]", str(ROOT / "assets/example_driving.mp4"))
    page.get_by_text("Face found. 56 frames").wait_for(timeout=60_000)
    # Once both are shown, the service tracks them for the next Preview, in the background.
    wait_for(
        lambda: "uploads tracked ahead of their preview" in app_server.log.read_text(),
        timeout=60,
        what="the uploads tracked in the background",
    )
    for mode, visible in (
        ("novel-dynamic", "Novel view"),
        ("camera-only", "Camera path"),
        ("all-dynamic", "Camera path"),
        ("frontal-dynamic", None),
    ):
        page.locator("#mode").get_by_text(mode, exact=True).click()
        if visible:
            page.get_by_text(visible, exact=True).first.wait_for(state="visible", timeout=10_000)
    page.locator("#mode").get_by_text("all-dynamic", exact=True).click()
    page.locator("#preview-button").click()
    page.locator("#normals-video video").first.wait_for(state="attached", timeout=120_000)
    page.locator("#preview-summary").get_by_text("frames at").wait_for(timeout=60_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-preview.png"), full_page=True)
    assert (ARTIFACTS / "ui-preview.png").stat().st_size > 10_000
    _no_error_shown(page)


def _results(outputs: Path) -> set[Path]:
    return set(outputs.glob("req-*/result*.mp4"))


def _in_first_viewport(page, selector: str) -> bool:
    """The element's box lies inside the visible 1440x1000 window (as scrolled now)."""
    box = page.locator(selector).bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + min(box["height"], 80) <= 1000


@pytest.fixture
def small_page(browser, app_url):
    """A tab the size of a laptop screen (1440x1000): what a presenter sees at once."""
    page = _open_page(browser, app_url, 1440, 1000)
    yield page
    page.close()


def test_each_modes_example_shows_its_preview(page):
    """One click per mode: the preview appears, its summary naming the mode and its path or
    view (so a preview of the previous example cannot pass for it)."""
    for mode, camera in (
        ("frontal-dynamic", None),
        ("novel-dynamic", "view: azimuth 30°"),
        ("camera-only", "path: sweep"),
        ("all-dynamic", "path: orbit"),
    ):
        page.locator(f"#example-{mode}").click()
        summary = page.locator("#preview-summary")
        summary.get_by_text(f"Mode: {mode}").wait_for(timeout=180_000)
        if camera:
            assert camera in summary.inner_text()
        page.locator("#normals-video video").first.wait_for(state="attached", timeout=30_000)
        assert page.locator("#mode input:checked").get_attribute("value") == mode
    _no_error_shown(page)


def _small_run(page, mode: str, frames: int, size: int, steps: int) -> None:
    """The example photo uploaded, the mode chosen and a short run set up."""
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.locator("#mode").get_by_text(mode, exact=True).click()
    for slider, value in (("#frames", frames), ("#steps", steps)):
        field = page.locator(f"{slider} input[type=number]")
        field.fill(str(value))
        field.press("Enter")
    page.locator("#size input").click()
    page.get_by_role("option", name=str(size), exact=True).click()


def test_generate_shows_its_progress_in_view_and_a_note_of_what_made_it(small_page):
    """Generate on the tiny model: the run's status appears within the 1440x1000 window, and
    the result note names the mode, the path, the seed and the time taken."""
    page = small_page
    _small_run(page, "camera-only", frames=5, size=256, steps=2)
    page.locator("#generate-button").click()
    status = page.locator("#run-status")
    status.get_by_text(re.compile("Starting|Loading|Encoding|Denoising|Done")).first.wait_for(
        timeout=60_000
    )
    assert _in_first_viewport(page, "#run-status")
    assert page.locator("#generate-button").is_disabled() or status.get_by_text("Done").count()
    status.get_by_text("Done in").wait_for(timeout=300_000)
    note = status.inner_text()
    assert "mode: camera-only" in note and "path: orbit" in note
    assert re.search(r"seed \d+", note) and re.search(r"Done in \d+ s", note)
    page.locator("#result-video video").first.wait_for(state="attached", timeout=30_000)
    # The button comes back in the event after the result's (run_finished), so wait for it
    # rather than read it at once; it must come back within seconds.
    page.wait_for_function("!document.querySelector('#generate-button').disabled", timeout=15_000)
    _no_error_shown(page)


def test_cancel_on_the_page_stops_the_running_generation(small_page, app_server):
    """Generate with the tiny model (the "Fast" settings: 20 steps), press Cancel once the
    page shows denoising progress: the page ends with "Cancelled after step n", the service
    stopped at that step (its log says so) and no result video is ever written. Were Cancel
    not wired to the service, the run would go on and write its result."""
    page = small_page
    before = _results(app_server.outputs)
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.locator("#mode").get_by_text("camera-only", exact=True).click()
    page.get_by_text("Camera path", exact=True).first.wait_for(state="visible", timeout=10_000)
    page.get_by_role("button", name="Fast (fits a free ZeroGPU call)").click()
    page.locator("#generate-button").click()
    page.locator("#run-status").get_by_text("Denoising").wait_for(timeout=180_000)
    page.locator("#cancel-button").click()
    cancelled = page.locator("#run-status").get_by_text(re.compile(r"Cancelled after step \d+"))
    cancelled.wait_for(timeout=120_000)
    step = int(re.search(r"Cancelled after step (\d+) of 20", cancelled.inner_text())[1])
    assert step < 20
    stopped = re.search(r"generation cancelled after step (\d+) of 20", app_server.log.read_text())
    assert stopped and int(stopped[1]) == step
    assert not _results(app_server.outputs) - before, "the cancelled run wrote its result"
    assert page.locator("#result-video video").count() == 0  # no result shown
    assert not page.errors, page.errors


def test_a_text_file_named_jpg_gets_one_clear_sentence(small_page, tmp_path):
    """No Gradio dump (component index, data model, PIL's error, server paths): one sentence
    naming the file as the user named it, beside the upload."""
    page = small_page
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo\n" * 50)
    page.set_input_files("#portrait input[type=file]", str(fake))
    note = page.locator("#portrait-note")
    note.get_by_text("is not a photo this app can read").wait_for(timeout=60_000)
    text = note.inner_text()
    assert "“holiday.jpg” is not a photo this app can read" in text, text
    for leak in ("UnidentifiedImageError", "ImageData", "/tmp", str(tmp_path), "index"):
        assert leak not in text, text


def test_choosing_wan_animate_shows_what_drives_it(page):
    """The Engine selector: choosing wan-animate bolds its line, turns the estimate to the 14B
    model's and makes Preview show the skeleton and face-crop videos beside the others."""
    assert page.locator("#pose-video").count() == 0 or not page.locator("#pose-video").is_visible()
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.set_input_files("#driving input[type=file]", str(ROOT / "assets/example_driving.mp4"))
    page.get_by_text("Face found. 56 frames").wait_for(timeout=60_000)
    page.locator("#engine").get_by_text("wan-animate", exact=True).click()
    page.locator("#engine-text strong").get_by_text("wan-animate:").wait_for(timeout=10_000)
    page.locator("#estimate").get_by_text("Wan2.2-Animate-14B").wait_for(timeout=10_000)
    # Its sliders follow it: the engine's own defaults (engines.REGISTRY).
    own = engine_info("wan-animate")
    steps, guidance = (
        page.locator("#steps input[type=number]"),
        page.locator("#guidance input[type=number]"),
    )
    size = page.locator("#size input")
    wait_for(
        lambda: (
            float(steps.input_value()) == own.default_steps()
            and float(guidance.input_value()) == own.default_guidance()
            and size.input_value() == str(own.default_size())
        ),
        timeout=10,
        what="the engine's own steps, guidance and size",
    )
    page.locator("#preview-button").click()
    page.locator("#pose-video video").first.wait_for(state="attached", timeout=120_000)
    page.locator("#face-video video").first.wait_for(state="attached", timeout=60_000)
    page.locator("#normals-video video").first.wait_for(state="attached", timeout=60_000)
    _no_error_shown(page)


# ------------------------------------------------------- issue 29: never lies, never stuck
# The band a banner is burnt into (generation.banner_layout): the top 1/14 of the frame.
_BAND_COVERS = """([selector, band]) => {
    // Every visible element of the page whose box reaches into the video's top band, other
    // than the video and what holds it (elementFromPoint would miss a label that lets clicks
    // through: Gradio's floating labels have pointer-events none).
    const video = document.querySelector(selector + ' video');
    const box = video.getBoundingClientRect();
    const bottom = box.top + box.height * band;
    const covers = [];
    for (const el of document.body.querySelectorAll('*')) {
        if (el === video || el.contains(video) || video.contains(el)) continue;
        const r = el.getBoundingClientRect();
        if (r.width < 1 || r.height < 1) continue;
        const style = getComputedStyle(el);
        if (style.visibility === 'hidden' || parseFloat(style.opacity) === 0) continue;
        if (r.right <= box.left || r.left >= box.right || r.bottom <= box.top || r.top >= bottom)
            continue;
        covers.push(el.tagName + '.' + el.className + ': ' + (el.innerText || '').slice(0, 30));
    }
    return covers;
}"""


def _nothing_covers_the_banner(page, size: int) -> None:
    """Nothing of the page (the player's label, its buttons) lies over the band where the
    result's banner says what made it: every point of the band shows the video itself."""
    for selector in ("#result-video", "#side-video"):
        page.locator(f"{selector} video").first.wait_for(state="attached", timeout=30_000)
        page.locator(selector).scroll_into_view_if_needed()
        band = max(12, size // 14) / size
        covered = page.evaluate(_BAND_COVERS, [selector, band])
        assert not covered, f"{selector} at {size}px: {covered[:4]}"


@pytest.mark.parametrize(
    ("viewport", "engine", "sizes"),
    [((1440, 1000), "factorportrait", (256, 768)), ((390, 844), "wan-animate", (512,))],
    ids=["desktop", "phone"],
)
def test_no_label_or_button_covers_the_banner_at_the_smallest_and_largest_sizes(
    browser, app_url, viewport, engine, sizes
):
    """Issue 29, item 1: the player's "Result" label covered "UN" of "UNTRAINED MODEL" (and
    its download button the banner's end): the banner must be whole on the page, on both
    engines, at the smallest and largest sizes and on a phone."""
    page = _open_page(browser, app_url, *viewport)
    try:
        page.locator("#engine").get_by_text(engine, exact=True).click()
        for size in sizes:
            _small_run(page, "camera-only", frames=5, size=size, steps=1)
            page.locator("#generate-button").click()
            page.locator("#run-status").get_by_text("Done in").wait_for(timeout=300_000)
            _nothing_covers_the_banner(page, size)
            page.locator("#result-download").wait_for(state="visible", timeout=15_000)
            page.wait_for_function(
                "!document.querySelector('#generate-button').disabled", timeout=15_000
            )
        assert not page.errors, page.errors
    finally:
        page.close()


def test_generate_comes_back_after_a_failure_and_a_good_example_clears_the_error(
    small_page, tmp_path
):
    """Issue 29, item 2: a photo with no face made Generate fail, and the button stayed grey
    for good (Gradio runs no ``.then`` after an error). It comes back at once; an example's
    valid preview clears the old error."""
    import numpy as np
    from PIL import Image

    page = small_page
    faceless = tmp_path / "sky.png"
    gradient = np.zeros((256, 256, 3), np.uint8)
    gradient[..., 2] = np.linspace(60, 250, 256, dtype=np.uint8)[:, None]
    Image.fromarray(gradient).save(faceless)
    page.set_input_files("#portrait input[type=file]", str(faceless))
    page.locator("#portrait-note").get_by_text("No face found").wait_for(timeout=60_000)
    page.locator("#mode").get_by_text("camera-only", exact=True).click()
    page.locator("#generate-button").click()
    status = page.locator("#run-status")
    status.get_by_text("no face found").wait_for(timeout=120_000)
    page.wait_for_function("!document.querySelector('#generate-button').disabled", timeout=15_000)
    page.locator("#example-camera-only").click()
    page.locator("#preview-summary").get_by_text("Mode: camera-only").wait_for(timeout=180_000)
    wait_for(lambda: "no face found" not in status.inner_text(), timeout=15, what="error cleared")
    assert not page.locator("#generate-button").is_disabled()


def test_a_refused_photo_says_why_beside_the_upload_and_leaves_the_slot(small_page, tmp_path):
    """Issue 29, item 3: a 9000x9000 PNG was refused as "not a photo this app can read", in a
    toast that faded, the broken file left in the slot. Now: the pixel limit with the numbers,
    in the note beside the upload (no toast to fade), the slot empty; a good photo next
    replaces the note."""
    from PIL import Image

    page = small_page
    big = tmp_path / "big.png"
    Image.new("L", (9000, 9000), 128).save(big, optimize=True)
    page.set_input_files("#portrait input[type=file]", str(big))
    note = page.locator("#portrait-note")
    note.get_by_text("was refused").wait_for(timeout=60_000)
    text = note.inner_text()
    assert "9000x9000" in text and "MP limit" in text, text
    assert "not a photo this app can read" not in text and str(tmp_path) not in text, text
    wait_for(lambda: page.locator("#portrait img").count() == 0, timeout=15, what="slot empty")
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    note.get_by_text("Face found.").wait_for(timeout=60_000)
    assert "refused" not in note.inner_text()


def test_a_preview_that_lands_after_its_settings_changed_is_marked(page):
    """Issue 29, item 4: Size changed while a preview ran, and its answer ("... at 512x512")
    landed unmarked while Size said 256. A first preview tracks the new clip (seconds), so
    Size changes while it runs; its summary must say it is superseded."""
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.set_input_files("#driving input[type=file]", str(ROOT / "assets/example_expressive.mp4"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.locator("#mode").get_by_text("all-dynamic", exact=True).click()
    page.locator("#preview-button").click()
    page.locator("#size input").click()
    page.get_by_role("option", name="256", exact=True).click()
    summary = page.locator("#preview-summary")
    clicked = time.monotonic()
    # Settled: the answer shown (superseded or current), or, when the answer landed before the
    # change, the change's "Out of date" with nothing more to come (the preview is seconds).
    wait_for(
        lambda: (
            "frames at" in summary.inner_text()
            or ("Out of date" in summary.inner_text() and time.monotonic() - clicked > 30)
        ),
        timeout=120,
        what="the answer or the change's mark",
    )
    page.wait_for_timeout(2000)  # the settle step that follows the preview's answer
    text = summary.inner_text()
    # Superseded when the answer landed after the change (the usual order: the first preview
    # tracks the clip); "Out of date" when it landed first and the change then marked it. Never
    # the old size unmarked. (The order itself: test_app_service's handler test.)
    assert "at 256x256" in text or "Superseded" in text or "Out of date" in text, text
    assert "at 512x512" not in text or "Superseded" in text, text


def test_each_modes_example_generates_a_real_result_on_the_geometry_engine(small_page):
    """Issue 26: on a CPU the geometric engine makes a real video of the photo in every mode,
    from the example's click to the result shown, labelled as a geometric warp."""
    page = small_page
    page.locator("#engine").get_by_text("geometry", exact=True).click()
    page.locator("#engine-text strong").get_by_text("geometry:").wait_for(timeout=10_000)
    # Steps and guidance mean nothing to it: greyed out.
    wait_for(
        lambda: page.locator("#steps input[type=number]").is_disabled(),
        timeout=10,
        what="steps greyed out for the geometric engine",
    )
    for mode in ("frontal-dynamic", "novel-dynamic", "camera-only", "all-dynamic"):
        page.locator(f"#example-{mode}").click()
        page.locator("#preview-summary").get_by_text(f"Mode: {mode}").wait_for(timeout=180_000)
        page.wait_for_function(
            "!document.querySelector('#generate-button').disabled", timeout=15_000
        )
        page.locator("#generate-button").click()
        note = page.locator("#run-status")
        note.get_by_text(f"mode: {mode}").wait_for(timeout=180_000)
        text = note.inner_text()
        assert "Engine: geometry" in text and "not diffusion and not FactorPortrait" in text, text
        page.locator("#result-video video").first.wait_for(state="attached", timeout=30_000)
    _no_error_shown(page)


def test_an_example_plays_its_preview_by_itself_with_the_modes_controls_in_view(small_page):
    """Issue 29, item 5: the examples' previews did not play by themselves, a click scrolled
    past the camera editor, and camera-only's example loaded a clip it ignores."""
    page = small_page
    page.locator("#example-all-dynamic").click()
    page.locator("#preview-summary").get_by_text("Mode: all-dynamic").wait_for(timeout=180_000)
    page.locator("#strip-video video").first.wait_for(state="attached", timeout=30_000)
    playing = (
        "(video) => !video.paused && video.muted && video.loop && video.currentTime > 0"
    )  # fmt: skip
    wait_for(
        lambda: page.locator("#strip-video video").first.evaluate(playing),
        timeout=20,
        what="the preview playing by itself, muted and looping",
    )
    # The page stays where the mode and its camera editor are (not scrolled past them).
    assert _in_first_viewport(page, "#mode"), page.locator("#mode").bounding_box()
    page.locator("#example-camera-only").click()
    page.locator("#preview-summary").get_by_text("Mode: camera-only").wait_for(timeout=180_000)
    wait_for(
        lambda: page.locator("#driving video").count() == 0,
        timeout=15,
        what="no driving clip loaded by the camera-only example",
    )


def test_on_a_phone_the_3d_view_and_the_engine_texts_take_the_width(browser, app_url):
    """Issue 29, item 7: at 390 px the camera editor's 3D view was squeezed to about 160 px
    (path and legend cut off) and the engine texts to a tall narrow column."""
    page = _open_page(browser, app_url, 390, 844)
    try:
        page.locator("#mode").get_by_text("all-dynamic", exact=True).click()
        plot = page.locator("#path-view .js-plotly-plot")
        plot.wait_for(state="visible", timeout=10_000)
        plot.scroll_into_view_if_needed()
        box = plot.bounding_box()
        assert box["width"] >= 300 and box["height"] >= 300, box
        text = page.locator("#engine-text").bounding_box()
        assert text["width"] >= 300, text
    finally:
        page.close()
