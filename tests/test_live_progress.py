"""The capture progress bar shows bytes and a records count when stderr is a terminal."""

from __future__ import annotations

import pytest

import pageowner.report.progress as progress_module
from pageowner.report.progress import Progress


def test_progress_shows_the_records_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a terminal on stderr (forced), and rich told to draw as on one
    monkeypatch.setattr(progress_module, "stderr_is_terminal", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    # WHEN a capture reports bytes and records
    with Progress("capturing page_owner", count_label="records") as update:
        update(3 * 1024 * 1024, None, 12345)
    # THEN the bar drew the records count
    assert "12,345 records" in capsys.readouterr().err


def test_progress_is_silent_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress("capturing page_owner", count_label="records") as update:
        update(100, None, 5)
    assert capsys.readouterr().err == ""
