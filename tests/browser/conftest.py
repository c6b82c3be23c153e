"""A real browser: Playwright driving Debian's chromium (installed by ``make install``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.tools import program

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The OHIF viewer draws with WebGL (cornerstone3D): software GL through SwiftShader,
# and without --disable-gpu, which would turn WebGL off.
WEBGL_ARGS = [
    *(arg for arg in ARGS if arg != "--disable-gpu"),
    "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader",
]


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Any]:
    """One Playwright for the session: its sync API cannot run twice at once in a
    thread, so both browsers below come from it."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop; Django must allow ORM calls from
    # the test thread meanwhile.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            yield p
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# What chromium writes to the console when the Content-Security-Policy blocks something
# ("Executing inline script violates the following Content Security Policy directive").
CSP_VIOLATION = "Content Security Policy"
# Violations seen by the running test's pages (cleared and checked around each test).
csp_violations: list[str] = []


def _watch_console(message: Any) -> None:
    if CSP_VIOLATION in message.text:
        csp_violations.append(f"{message.type}: {message.text} ({message.location})")


class CspWatchedBrowser:
    """A browser whose every context reports the CSP violations of its pages, so that
    each browser test also proves its pages work under the site's policy."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_context(self, *args: Any, **kwargs: Any) -> Any:
        context = self._browser.new_context(*args, **kwargs)
        context.on("console", _watch_console)
        return context

    def new_page(self, *args: Any, **kwargs: Any) -> Any:
        page = self._browser.new_page(*args, **kwargs)
        page.on("console", _watch_console)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture(autouse=True)
def _no_csp_violations() -> Iterator[None]:
    """Fails a browser test whose pages broke the Content-Security-Policy."""
    csp_violations.clear()
    yield
    found = list(csp_violations)
    csp_violations.clear()
    assert found == [], "Content-Security-Policy violations:\n" + "\n".join(found)


def _launch(playwright: Any, args: list[str]) -> Any:
    return playwright.chromium.launch(executable_path=program(CHROMIUM), args=args, headless=True)


@pytest.fixture(scope="session")
def browser(playwright_session: Any) -> Iterator[Any]:
    browser = _launch(playwright_session, ARGS)
    yield CspWatchedBrowser(browser)
    browser.close()


@pytest.fixture(scope="session")
def webgl_browser(playwright_session: Any) -> Iterator[Any]:
    """Chromium with WebGL (software), for pages that draw images: the OHIF viewer."""
    browser = _launch(playwright_session, WEBGL_ARGS)
    yield CspWatchedBrowser(browser)
    browser.close()
