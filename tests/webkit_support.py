"""WebKit, the engine of Safari, for the pages a patient on an iPhone uses: Debian's WebKitGTK (its MiniBrowser)
driven through WebKitWebDriver with Selenium, on a virtual X display. The same engine as Safari's (WebCore,
JavaScriptCore), not Safari itself: Debian builds it without WebRTC, so it stands for a browser that can open
the camera but make no video call (see docs/testing.md, "WebKit")."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import axe_playwright_python
import pytest

from tests.conftest import require_service
from tests.video.call_network_support import wait_until

WEBKIT_DRIVER = os.environ.get("WEBKIT_DRIVER_PATH", "/usr/bin/WebKitWebDriver")
# The small browser the WebKitGTK package ships for automation; its settings are command-line switches.
MINIBROWSER_GLOB = "/usr/lib/*/webkit2gtk-4.*/MiniBrowser"
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
AXE_SCRIPT = Path(axe_playwright_python.__file__).with_name("axe.min.js")


def _minibrowser() -> str:
    found = sorted(glob.glob(MINIBROWSER_GLOB))
    if not found or not (shutil.which(WEBKIT_DRIVER) or os.path.exists(WEBKIT_DRIVER)):
        require_service("WebKitGTK's WebKitWebDriver and MiniBrowser are not installed (webkit2gtk-driver)")
    return found[-1]


@contextlib.contextmanager
def virtual_display() -> Iterator[str]:
    """An Xvfb server on a display number it picks itself; yields the DISPLAY value."""
    if not shutil.which("Xvfb"):
        require_service("Xvfb is not installed (xvfb)")
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def webkit_display() -> Iterator[str]:
    with virtual_display() as display:
        yield display


@pytest.fixture
def webkit(webkit_display) -> Iterator[Callable[..., object]]:
    """Opens WebKit windows (one browser session each: cookies of their own) at a phone's size; closes them all."""
    from selenium import webdriver
    from selenium.webdriver.webkitgtk.options import Options
    from selenium.webdriver.webkitgtk.service import Service

    binary = _minibrowser()
    opened = []

    def open_webkit(*, user_agent: str = IPHONE_SAFARI, width: int = 390, height: int = 844):
        options = Options()
        options.binary_location = binary
        for switch in (
            "--automation",
            f"--user-agent={user_agent}",
            # The camera and microphone as a phone has them, but fake: WebKit's mock capture devices.
            "--enable-media-stream=true",
            "--enable-mock-capture-devices=true",
            "--media-playback-requires-user-gesture=false",
        ):
            options.add_argument(switch)
        service = Service(
            executable_path=WEBKIT_DRIVER,
            env={**os.environ, "DISPLAY": webkit_display, "LANGUAGE": "es_PE", "LANG": "C.UTF-8"},
        )
        driver = webdriver.WebKitGTK(options=options, service=service)
        opened.append(driver)
        driver.set_window_size(width, height)
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        return driver

    yield open_webkit
    for driver in opened:
        with contextlib.suppress(Exception):
            driver.quit()


def _literal(text: str) -> str:
    """`text` as an XPath string literal (it may hold either kind of quote)."""
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    parts = text.split('"')
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in parts) + ")"


def by_label(driver, label: str):
    """The form control a <label> with this text names (Django's forms end the text with a colon)."""
    from selenium.webdriver.common.by import By

    xpath = f"//label[normalize-space()={_literal(label)} or normalize-space()={_literal(label + ':')}]"
    found = driver.find_element(By.XPATH, xpath)
    target = found.get_attribute("for")
    return driver.find_element(By.ID, target) if target else found.find_element(By.XPATH, ".//input|.//textarea")


def by_role(driver, role: str, name: str):
    """The displayed button or link whose text holds `name`, waiting for it to show."""
    from selenium.webdriver.common.by import By

    tag = {"button": "button", "link": "a"}[role]
    xpath = f"//{tag}[contains(normalize-space(), {_literal(name)})]"
    return wait_until(
        lambda: next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None),
        timeout=20,
        message=f"no {role} {name!r}",
    )


def text_of(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found and found[0].is_displayed() else ""


def wait_for_path(driver, fragment: str) -> None:
    wait_until(lambda: fragment in driver.current_url, timeout=20, message=f"no address with {fragment!r}")


def assert_accessible_in_webkit(driver, *, context: str = "") -> None:
    """axe-core, the same rules as the Chromium tests (WCAG 2.1 A/AA), run inside WebKit on the current page."""
    driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
    results = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } })
          .then((found) => done(found.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.length} nodes)`)))
          .catch((error) => done([`axe did not run: ${error}`]));
        """
    )
    assert not results, f"axe-core violations in WebKit {context}:\n" + "\n".join(results)
