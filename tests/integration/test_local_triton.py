"""The local launcher: a real tritonserver that starts, serves, fails loudly and stops clean."""

from __future__ import annotations

import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.backend.triton_client import TritonAsr
from gateway.core.contract import Priority, TranscribeOptions
from gateway.tools.local_triton import (
    DEFAULT_MODEL_REPOSITORY,
    SHARED_MEMORY,
    LocalTriton,
    TritonLaunchError,
    TritonPorts,
    model_repository_with,
)
from testsupport.net import free_port
from testsupport.wer import word_error_rate

pytestmark = pytest.mark.integration


def process_group(pgid: int) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.add(int(entry.name))
            except ProcessLookupError:
                continue
    return members


def ports() -> TritonPorts:
    return TritonPorts(free_port(), free_port(), free_port())


def regions_of(server: LocalTriton) -> list[Path]:
    return sorted(SHARED_MEMORY.glob(f"{server.shared_memory_prefix}*"))


def test_stop_leaves_no_server_or_stub_behind(exported_weights, tmp_path: Path) -> None:
    """The server and its stubs run in a process group of their own, stopped together, in
    the launcher's session (where the kernel shares CPU time out by session, Triton is not
    put on an equal footing with the whole gateway: gateway.modes.priority)."""
    server = LocalTriton(ports=ports(), log_path=tmp_path / "triton.log")
    with server:
        pid = server.process.pid
        group = process_group(pid)
        assert server.is_ready()
        assert len(group) >= 2, "expected tritonserver and its Python-backend stub"
        assert {os.getsid(member) for member in group} == {os.getsid(0)}
        assert regions_of(server), "the stubs' shared memory carries the launcher's prefix"
    assert process_group(pid) == set()
    assert not server.is_ready()
    assert regions_of(server) == []


def test_a_killed_servers_shared_memory_is_removed_when_it_is_reaped(
    exported_weights, tmp_path: Path
) -> None:
    """A crash leaves the Python backend's regions in /dev/shm (the server cannot remove
    them); stopping the launcher, as the supervisor does before a restart, removes them."""
    server = LocalTriton(ports=ports(), log_path=tmp_path / "triton.log")
    with server:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        assert regions_of(server), "a killed server leaves its regions behind"
    assert regions_of(server) == []


def test_unknown_weights_fail_at_load_with_a_clear_message(
    exported_weights, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    (repository / "whisper").mkdir(parents=True)
    config = (DEFAULT_MODEL_REPOSITORY / "whisper" / "config.pbtxt").read_text()
    config = re.sub(r'string_value: "tiny.en"', 'string_value: "no-such-weights"', config)
    (repository / "whisper" / "config.pbtxt").write_text(config)
    (repository / "whisper" / "1").symlink_to(DEFAULT_MODEL_REPOSITORY / "whisper" / "1")
    log = tmp_path / "triton.log"
    with pytest.raises(TritonLaunchError, match="exited"):
        with LocalTriton(model_repository=repository, ports=ports(), log_path=log):
            pass
    assert "no exported weights named 'no-such-weights'" in log.read_text()


async def test_the_cpu_int8_parameter_serves_int8_layers(
    exported_weights, tmp_path: Path, clips
) -> None:
    """The model parameter reaches the model, which says in Triton's log what it runs, and
    serves right through Triton."""
    repository = model_repository_with(tmp_path / "repository", {"cpu_int8": "true"})
    log = tmp_path / "triton.log"
    jfk = clips["jfk.flac"]
    with LocalTriton(model_repository=repository, ports=ports(), log_path=log) as server:
        backend = TritonAsr(server.grpc_url, "whisper", timeout_s=60, ready_timeout_s=5)
        try:
            result = await backend.transcribe(
                jfk.audio, TranscribeOptions(language="en"), priority=Priority.FILE
            )
        finally:
            await backend.close()
    assert word_error_rate(jfk.text, result.text) <= 0.05, result.text
    assert "on cpu: fp16=False, int8=True, low_latency_bfloat16=False" in log.read_text()


def test_tritons_admin_apis_are_closed_without_the_key(triton) -> None:
    """Shared-memory registration and model control (the CVE-2025-23319 chain's steps) answer
    nobody without the admin key; the model's own APIs stay open."""
    for path in ("/v2/repository/index", "/v2/systemsharedmemory/status"):
        request = urllib.request.Request(f"{triton.http_url}{path}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403, path
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="(?i)restricted|permission|denied"):
            client.get_system_shared_memory_status()
        assert client.is_model_ready("whisper")
    finally:
        client.close()
