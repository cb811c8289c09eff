"""Shared test fixtures: paths to the real dumps, decompressed copies, a CLI runner."""

from __future__ import annotations

import lzma
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"

# CI draws the same examples every run (derandomize): a red build is then a bug to fix,
# never a lucky draw; `HYPOTHESIS_PROFILE=long` and `make fuzz` explore at random.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _stable_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make rich and click output independent of the terminal running the tests."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(scope="session")
def plain_fixture(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Return a function giving an uncompressed copy of a fixture file (cached per session)."""
    cache = tmp_path_factory.mktemp("plain")
    made: dict[str, Path] = {}

    def get(relative: str) -> Path:
        if relative not in made:
            source = FIXTURES / relative
            if source.suffix == ".xz":
                target = cache / source.with_suffix("").name
                target.write_bytes(lzma.decompress(source.read_bytes()))
            else:
                target = source
            made[relative] = target
        return made[relative]

    return get


@pytest.fixture()
def runner() -> CliRunner:
    """Return a click test runner (stdout and stderr are kept apart since click 8.2)."""
    return CliRunner()


# Headless Chromium for the HTML tests (tests/browser.py drives it over the DevTools pipe).
from tests.browser import Browser, BrowserError, find_chromium  # noqa: E402

CHROMIUM = find_chromium()
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: install Debian's `chromium` package (make test does it when "
    "run as root with apt), or set PAGEOWNER_CHROMIUM",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Start one headless Chromium for a test module."""
    assert CHROMIUM is not None
    try:
        with Browser(CHROMIUM) as running:
            yield running
    except BrowserError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Chromium would not start: {exc}")
