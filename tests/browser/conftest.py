"""What the browser tests share: Chromium's fake microphone playing jfk.flac."""

from __future__ import annotations

from pathlib import Path

import pytest

from testsupport.browser import fake_microphone
from testsupport.clips import Clip


@pytest.fixture(scope="session")
def jfk_microphone(
    clips: dict[str, Clip], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """The WAV Chromium's fake microphone plays (jfk.flac, then silence), and its flags."""
    wav = tmp_path_factory.mktemp("microphone") / "jfk.wav"
    return wav, fake_microphone(clips["jfk.flac"].path, wav)
