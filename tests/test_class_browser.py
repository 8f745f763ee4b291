"""The teacher's view in a real browser: /class at 1280x800 in Debian's headless Chromium (Playwright).

The page takes the admin key from the URL's fragment (never sent to the server),
polls /class/data and draws the students' table and the plot of the class record.
The screenshot goes to test-artifacts/class_view.png. A missing Chromium is a
failure, not a skip (see test_browser.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from gsexplore.serve import ServerThread, create_app

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
LAPTOP = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
KEYS = {"clave-ana-000000000000": "ana", "clave-beto-11111111111": "beto", "clave-carla-2222222222": "carla"}
TEACHER = "clave-docente-99999999999"

pytestmark = pytest.mark.browser


def test_class_view_in_chromium_at_1280x800(tiny_backend):
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `sudo apt-get install chromium` (make test does it)"
    from playwright.sync_api import expect, sync_playwright

    app = create_app([tiny_backend], api_keys=KEYS, admin_keys={TEACHER: "docente"})
    with ServerThread(app) as srv:
        for i, (key, _) in enumerate(KEYS.items()):
            for t in (0.3, 0.9):
                body = {"messages": [{"role": "user", "content": f"Pregunta {i}"}], "max_tokens": 4,
                        "temperature": t, "chat_template_kwargs": {"enable_thinking": False}}
                r = httpx.post(f"{srv.url}/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {key}"}, timeout=120)
                assert r.status_code == 200, r.text
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport=LAPTOP)
                page.set_default_timeout(60_000)
                try:
                    # a student's key: the page says the view is the teacher's
                    page.goto(f"{srv.base}/class#key={next(iter(KEYS))}")
                    expect(page.locator("#error")).to_contain_text("teacher")
                    expect(page.locator("#login")).to_be_visible()
                    # the teacher pastes the admin key
                    page.fill("#key", TEACHER)
                    page.click("#save")
                    rows = page.locator("table.gs-class tbody tr")
                    expect(rows).to_have_count(3)
                    for label in KEYS.values():
                        expect(page.locator("table.gs-class tbody")).to_contain_text(label)
                    expect(page.locator("#error")).to_have_text("")
                    expect(page.locator("h1")).to_contain_text("La clase")
                    expect(page.locator("#plot svg")).to_be_visible()
                    expect(page.locator("#x")).to_have_value("temperature")
                    page.select_option("#metric", "n_tokens")
                    expect(page.locator("#plot")).to_contain_text(re.compile("tokens generados"))
                    expect(page.locator("#status")).to_contain_text("Actualizado")
                    assert not any(k in page.content() for k in [*KEYS, TEACHER])
                    page.screenshot(path=str(ARTIFACTS / "class_view.png"))
                    # English, with the key kept in the tab (not in the URL)
                    page.goto(f"{srv.base}/class?lang=en")
                    expect(page.locator("table.gs-class thead")).to_contain_text("Student")
                    assert TEACHER not in page.url
                except BaseException:
                    page.screenshot(path=str(ARTIFACTS / "class_view_failure.png"))
                    raise
            finally:
                browser.close()
