"""The GPU kit's parts: split here, received one call at a time there, joined and checked."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gpu_kit
from testsupport import clips

THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def archive(tmp_path: Path) -> bytes:
    data = os.urandom(10_000)
    (tmp_path / gpu_kit.ARCHIVE).write_bytes(data)
    return data


def split_and_receive(tmp_path: Path, python: str = THIS_PYTHON, skip: int = 0) -> Path:
    parts = gpu_kit.split(tmp_path / gpu_kit.ARCHIVE, tmp_path / "parts", 3_000, python)
    host = tmp_path / "host"
    for index, part in enumerate(parts, start=1):
        if index != skip:
            gpu_kit.receive(part, host)
    return host


def test_parts_received_one_at_a_time_join_into_the_archive(tmp_path: Path, archive: bytes):
    host = split_and_receive(tmp_path)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["1", "2", "3", "4"]
    assert (tmp_path / "parts" / "4" / f"{gpu_kit.ARCHIVE}.4").stat().st_size == 1_000
    assert gpu_kit.joined_archive(host).read_bytes() == archive


def test_a_missing_part_is_named(tmp_path: Path, archive: bytes):
    host = split_and_receive(tmp_path, skip=3)
    with pytest.raises(SystemExit, match=r"parts missing: kit\.tar\.xz\.3 \(one `receive`"):
        gpu_kit.joined_archive(host)


def test_a_damaged_part_fails_the_checksum(tmp_path: Path, archive: bytes):
    host = split_and_receive(tmp_path)
    part = host / "parts" / f"{gpu_kit.ARCHIVE}.2"
    data = bytearray(part.read_bytes())
    data[100] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="a part is damaged"):
        gpu_kit.joined_archive(host)
    assert not (host / gpu_kit.ARCHIVE).exists()


def test_a_kit_for_another_python_is_refused(tmp_path: Path, archive: bytes):
    host = split_and_receive(tmp_path, python="3.9")
    with pytest.raises(SystemExit, match=f"built for Python 3.9, this is {THIS_PYTHON}"):
        gpu_kit.joined_archive(host)


def test_every_part_carries_the_manifest(tmp_path: Path, archive: bytes):
    split_and_receive(tmp_path)
    manifests = {(p / gpu_kit.MANIFEST).read_text() for p in (tmp_path / "parts").iterdir()}
    assert len(manifests) == 1
    assert json.loads(manifests.pop())["parts"] == 4


def test_only_the_last_call_installs_and_runs_the_benchmarks(tmp_path: Path):
    parts = [gpu_kit.ROOT / "build" / "gpu-kit" / str(i) for i in (1, 2, 3)]
    lines = gpu_kit.commands_for(parts).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "carry build/gpu-kit/1",
        "carry build/gpu-kit/2",
        "carry build/gpu-kit/3",
    ]
    assert all("install" not in line for line in lines[:2])
    assert "receive build/gpu-kit/3 && python3 -m benchmarks.gpu_kit install && " in lines[2]
    assert "python3 -m benchmarks.gpu --audio /tmp/hermes-gpu-kit/audio" in lines[2]


def test_the_last_call_runs_the_cuda_tests_on_the_carried_clips_then_the_benchmarks():
    parts = [gpu_kit.ROOT / "build" / "gpu-kit" / str(i) for i in (1, 2, 3)]
    last = gpu_kit.commands_for(parts).splitlines()[-1]
    install = last.index("benchmarks.gpu_kit install")
    tests = last.index(f"{clips.DECODED_CLIPS_ENV}=/tmp/hermes-gpu-kit/clips python3 -m pytest")
    benchmark = last.index("python3 -m benchmarks.gpu ")
    assert install < tests < benchmark
    assert "-k cuda tests/integration/test_decoder.py" in last
    # a failure is reported, and the benchmarks still run
    reported = "|| echo 'CUDA TESTS FAILED; the benchmarks run on'; }"
    assert f"{reported} && python3 -m benchmarks.gpu " in last
    command = last.split(": ", 1)[1]
    assert len(command) <= 2000  # what one device call takes


def test_clips_decoded_beforehand_are_read_instead_of_running_ffmpeg(tmp_path: Path, monkeypatch):
    clips.save_decoded_clips(tmp_path)
    jfk = clips.load_clips()["jfk.flac"].path
    saved = np.load(tmp_path / "jfk.flac.npy")
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, clips.load_audio.__wrapped__(jfk))  # as ffmpeg decodes
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        f"{name}.npy" for name in clips.load_clips()
    )
    np.save(tmp_path / "jfk.flac.npy", saved[:16_000])  # so that only the folder can give it
    monkeypatch.setenv(clips.DECODED_CLIPS_ENV, str(tmp_path))
    assert clips.load_audio.__wrapped__(jfk).size == 16_000
