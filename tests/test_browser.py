"""The real app in a real browser: `streamlit run app.py` driven by Debian's headless Chromium.

Skipped (with the reason) when there is no Chromium or no Playwright, unless
SAGA_SIM_REQUIRE_BROWSER=1, which turns the skip into a failure (CI sets it). Playwright drives the
system browser through ``executable_path``; it never downloads one.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _unavailable(reason: str) -> None:
    if os.environ.get("SAGA_SIM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SAGA_SIM_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_path() -> str:
    path = _chromium()
    if path is None:
        _unavailable("no Chromium found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    return path


@pytest.fixture(scope="module")
def app_url(browser_path):
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"streamlit did not come up on {url}:\n{out[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_a_preset_shows_its_compensation_on_the_timeline(browser_path, app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1500})
            page.goto(app_url, wait_until="domcontentloaded")
            page.get_by_text("choreography", exact=True).first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            assert page.locator(".js-plotly-plot .legendtext", has_text="compensation").count() == 0
            page.get_by_role("button", name="send_welcome_email step fails").click()
            # the timelines redraw with compensation arrows in their own legend entry
            legend = page.locator(".js-plotly-plot .legendtext", has_text="compensation (")
            expect(legend).to_have_count(2, timeout=60_000)  # one per style
            page.get_by_text("compensated", exact=True).first.wait_for(timeout=30_000)
            page.wait_for_url(re.compile(r"fault="), timeout=30_000)  # the link holds the run
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "browser_preset_email_fails.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "browser_preset_email_fails.png").stat().st_size > 10_000


def test_clicking_a_fault_matrix_cell_opens_its_run(browser_path, app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2200})
            page.goto(app_url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Experiments").click(timeout=60_000)
            page.get_by_text("runs simulated in").first.wait_for(timeout=60_000)
            grid = page.locator(".js-plotly-plot").first
            # the pick markers: one per (point, style), rows in matrix order, styles in columns
            markers = grid.locator(".scatterlayer .trace .points path")
            expect(markers).to_have_count(56, timeout=30_000)  # 28 points x 2 styles
            page.screenshot(path=str(ARTIFACTS / "browser_fault_matrix.png"), full_page=True)
            row = 13  # create_user/drop_reply: its reply (choreography: its event) is lost
            box = markers.nth(2 * row + 1).bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.get_by_text("Opened the fault matrix's").wait_for(timeout=30_000)
            page.wait_for_url(re.compile(r"fault=.*create_user.*reply"), timeout=30_000)
            # its outcome: completed in both styles (the coordinator's retry, the outbox relay)
            page.locator("text=completed >> visible=true").first.wait_for(timeout=30_000)
        finally:
            browser.close()
