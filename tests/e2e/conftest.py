"""The stack served over real HTTP in this process for a real browser: identity and campaigns
(the console's APIs; enrichment takes part through the bus only), the console in front of them,
and headless Chromium driven by Playwright (Debian's /usr/bin/chromium: never a downloaded one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.serving import served

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test" / "artifacts" / "e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def campaigns_url(campaigns_app) -> Iterator[str]:
    with served(campaigns_app) as url:
        yield url


@pytest.fixture(scope="module")
def console_url(settings, identity_url, campaigns_url) -> Iterator[str]:
    from services.console.app import create_app

    app = create_app(replace(settings, identity_url=identity_url, campaigns_url=campaigns_url))
    try:
        with served(app) as url:
            yield url
    finally:
        app.extensions["console"].backend.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium for the console's e2e tests")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): the console's e2e tests need it")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shot():
    """Saves a full-page screenshot as var/test/artifacts/e2e/<nn>-<name>.png."""
    taken = [0]

    def take(page, name: str) -> None:
        taken[0] += 1
        page.screenshot(path=str(ARTIFACTS / f"{taken[0]:02d}-{name}.png"), full_page=True)

    return take
