"""Shared by the browser call benchmarks: Debian's Chromium with fake camera and microphone, the patient's waiting
room and the practitioner's room of a visit, and the call client's own figures (window.teleconsultCall.stats)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# As the browser tests launch it: no sandbox in a container, fake devices that always grant, no background work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
STATS = "() => window.teleconsultCall.stats()"


@contextmanager
def chromium() -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM is used between its calls, one at a time.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def page_for(browser: Any, base_url: str, cookie: str) -> Any:
    context = browser.new_context(locale="es-PE", base_url=base_url)
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": base_url}])
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


@contextmanager
def call_pages(browser: Any, base_url: str, visit: Any) -> Iterator[tuple[Any, Any]]:
    """The patient in the waiting room and the practitioner in the room, both pages loaded (nobody admitted)."""
    patient = page_for(browser, base_url, visit.patient_cookie)
    practitioner = page_for(browser, base_url, visit.doctor_cookie)
    try:
        patient.goto(f"/visit/{visit.public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        practitioner.goto(f"/visit/{visit.public_id}/room/")
        practitioner.get_by_text("Paciente en la sala de espera").wait_for()
        yield patient, practitioner
    finally:
        patient.context.close()
        practitioner.context.close()


def admit(practitioner: Any) -> None:
    practitioner.get_by_role("button", name="Admitir", exact=True).click()


def frames(page: Any) -> tuple[int, str, int]:
    """Video frames decoded from the one other participant, that connection's state, and the page's welcomes."""
    stats = page.evaluate(STATS)
    peers = stats["peers"]
    if not peers:
        return 0, "none", stats["welcomes"]
    return int(peers[0]["framesDecoded"]), str(peers[0]["connection"]), int(stats["welcomes"])


def wait_for_frames(pages: list[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(frames(page)[0] > 0 for page in pages):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no frames decoded: {[page.evaluate(STATS) for page in pages]}")
        time.sleep(0.1)
