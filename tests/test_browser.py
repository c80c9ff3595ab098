"""A real browser (Debian's headless chromium, driven by Playwright) uses the launched app:
uploads the examples, walks through the four modes, runs a preview, saves a screenshot; starts
a generation and cancels it."""

import re
import shutil
from pathlib import Path

import pytest
from conftest import wait_for

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


@pytest.fixture
def page(browser, app_url):
    """A fresh tab on the app (its own Gradio session)."""
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_url, wait_until="networkidle")
    page.errors = errors
    yield page
    page.close()


def _no_error_shown(page):
    toasts = page.locator(".toast-body.error, .toast-wrap .error")
    assert toasts.count() == 0, toasts.all_inner_texts()
    assert not page.errors, page.errors


def test_upload_switch_modes_and_preview(page):
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.set_input_files("#driving input[type=file]", str(ROOT / "assets/example_driving.mp4"))
    page.get_by_text("Face found. 56 frames").wait_for(timeout=60_000)
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


def test_cancel_on_the_page_stops_the_running_generation(page, app_server):
    """Generate with the tiny model (the "Fast" settings: 20 steps), press Cancel once the
    page shows denoising progress: the page says it is cancelling, the service stops at its
    next step (its log says so) and no result video is ever written. Were Cancel not wired
    to the service, the run would go on and write its result."""
    before = _results(app_server.outputs)
    page.set_input_files("#portrait input[type=file]", str(ROOT / "assets/example_portrait.jpg"))
    page.get_by_text("Face found.").first.wait_for(timeout=60_000)
    page.locator("#mode").get_by_text("camera-only", exact=True).click()
    page.get_by_text("Camera path", exact=True).first.wait_for(state="visible", timeout=10_000)
    page.get_by_role("button", name="Fast (fits a free ZeroGPU call)").click()
    page.locator("#generate-button").click()
    page.get_by_text("denoising").first.wait_for(timeout=180_000)
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text("Cancelling at the next step…").wait_for(timeout=30_000)
    stopped = re.compile(r"generation cancelled after step (\d+) of 20")
    wait_for(
        lambda: stopped.search(app_server.log.read_text()) or _results(app_server.outputs) - before,
        timeout=600,
        what="the generation to stop or to finish",
        poll=0.2,
    )
    assert not _results(app_server.outputs) - before, "the cancelled run wrote its result"
    assert int(stopped.search(app_server.log.read_text())[1]) < 20
    assert page.locator("#result-video video").count() == 0  # no result shown
    assert not page.errors, page.errors


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
    page.locator("#preview-button").click()
    page.locator("#pose-video video").first.wait_for(state="attached", timeout=120_000)
    page.locator("#face-video video").first.wait_for(state="attached", timeout=60_000)
    page.locator("#normals-video video").first.wait_for(state="attached", timeout=60_000)
    _no_error_shown(page)
