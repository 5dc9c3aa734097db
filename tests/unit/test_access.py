"""Access control and logging, piece by piece: API keys, origins, request ids, log formats,
and the local launcher's loopback-only ports."""

from __future__ import annotations

import hmac
import io
import json
import logging
from pathlib import Path

import pytest

from gateway.server import access, logs
from gateway.server.access import ApiKeys
from gateway.server.origins import is_same_origin, normalise_origin, parse_origins
from gateway.server.request_context import MAX_LENGTH, clean_request_id, current_request_id
from gateway.server.settings import read_api_keys
from gateway.tools.local_triton import LocalTriton, TritonPorts


def test_api_keys_from_the_setting_and_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2025-01\nfile-key-1\n\n  file-key-2  \nsetting-key\n")
    keys = read_api_keys(" setting-key , other ,", str(key_file))
    assert keys == ("setting-key", "other", "file-key-1", "file-key-2")


@pytest.mark.parametrize(
    ("api_keys", "file_text", "message"),
    [
        ("", "# nothing but a comment\n\n", "holds no key"),
        ("good-key,sec ret", None, "API key #2 has spaces"),
        ("", "sec\tret\n", "API key #1 has spaces"),
        ("", b"sec\xffret", "is not UTF-8 text"),
    ],
)
def test_bad_key_configuration_is_refused_without_quoting_a_key(
    tmp_path: Path, api_keys: str, file_text: str | bytes | None, message: str
) -> None:
    path = ""
    if file_text is not None:
        key_file = tmp_path / "keys"
        key_file.write_bytes(file_text if isinstance(file_text, bytes) else file_text.encode())
        path = str(key_file)
    with pytest.raises(ValueError, match=message) as error:
        read_api_keys(api_keys, path)
    assert "ret" not in str(error.value)


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read .*: No such file"):
        read_api_keys("", str(tmp_path / "absent"))


def test_every_key_is_compared_whatever_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ApiKeys(["first-key", "second-key", "third-key"])
    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting_compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", counting_compare)
    for candidate, expected in [("first-key", 0), ("third-key", 2), ("nope", None), ("", None)]:
        compared.clear()
        assert keys.match(candidate) == expected
        assert len(compared) == 3  # no early exit on the first match
        assert {len(a) for a, _ in compared} == {len(b) for _, b in compared} == {32}  # digests
    assert not ApiKeys([]) and ApiKeys(["k"])


@pytest.mark.parametrize(
    ("origin", "normalised"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", None),
        ("https://app.example.com/path", None),
        ("https://user@app.example.com", None),
        ("https://app.example.com?x=1", None),
        ("app.example.com", None),
        ("https://app.example.com:99999", None),
    ],
)
def test_origins_are_normalised(origin: str, normalised: str | None) -> None:
    assert normalise_origin(origin) == normalised


def test_origin_lists_are_parsed_or_refused() -> None:
    assert parse_origins("") == frozenset()
    assert parse_origins("https://a.example, http://B.example:8080 ,*") == {
        "https://a.example",
        "http://b.example:8080",
        "*",
    }
    with pytest.raises(ValueError, match="'a.example/x' is not an origin"):
        parse_origins("https://ok.example,a.example/x")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://speech.example.com", "speech.example.com", True),
        ("https://speech.example.com", "speech.example.com:443", True),
        ("http://speech.example.com", "speech.example.com:8080", False),
        ("http://127.0.0.1:8080", "127.0.0.1:8081", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080", None, False),
        ("http://127.0.0.1:8080", "a:b", False),
    ],
)
def test_same_origin_is_host_and_port_of_the_host_header(
    origin: str, host: str | None, same: bool
) -> None:
    assert is_same_origin(origin, host) is same


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("req-7f3a:2", "req-7f3a:2"),
        ("Root=1-67891233-abcdef012345678912345678", "Root=1-67891233-abcdef012345678912345678"),
        ('bad id"\x00\n<script>', "badidscript"),
    ],
)
def test_incoming_request_ids_are_cleaned(incoming: str, kept: str) -> None:
    assert clean_request_id(incoming) == kept


def test_request_ids_are_bounded_and_made_when_missing() -> None:
    assert clean_request_id("x" * 1000) == "x" * MAX_LENGTH
    made = {clean_request_id(None), clean_request_id(""), clean_request_id(" \n")}
    assert len(made) == 3 and all(len(value) == 32 for value in made)


def emit(handler: logging.Handler, *, request_id: str | None, exc: bool = False) -> str:
    """What `handler` writes for one record logged inside a request with that id."""
    logger = logging.getLogger("tests.access")
    logger.addHandler(handler)
    token = current_request_id.set(request_id)
    try:
        if exc:
            try:
                raise RuntimeError("the model fell over")
            except RuntimeError:
                logger.exception("step failed for %s", "a stream")
        else:
            logger.warning("step failed for %s", "a stream")
    finally:
        current_request_id.reset(token)
        logger.removeHandler(handler)
    return handler.stream.getvalue()


def test_json_lines_carry_the_request_id_and_the_exception() -> None:
    line = emit(logs.handler("json", io.StringIO()), request_id="req-42", exc=True)
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "tests.access"
    assert entry["message"] == "step failed for a stream" and entry["request_id"] == "req-42"
    assert entry["time"].endswith("+00:00")
    assert "RuntimeError: the model fell over" in entry["exception"]


def test_text_lines_carry_the_request_id_or_a_dash() -> None:
    assert "WARNING tests.access [req-42] step failed for a stream" in emit(
        logs.handler("text", io.StringIO()), request_id="req-42"
    )
    assert "[-] step failed" in emit(logs.handler("text", io.StringIO()), request_id=None)


def test_configure_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        logs.configure("warning", "json", stream)
        assert root.level == logging.WARNING and len(root.handlers) == 1
        logging.getLogger("tests.access").info("below the level")
        logging.getLogger("tests.access").warning("above it")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["above it"]


def test_the_local_launcher_binds_every_triton_port_to_loopback(tmp_path: Path) -> None:
    command = LocalTriton(ports=TritonPorts(18000, 18001, 18002), work_dir=tmp_path).command()
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in command[1:] if "=" in arg)
    assert {flags[name] for name in ("http-address", "grpc-address", "metrics-address")} == {
        "127.0.0.1"
    }
    assert (flags["http-port"], flags["grpc-port"], flags["metrics-port"]) == (
        "18000",
        "18001",
        "18002",
    )
    assert not any("0.0.0.0" in arg for arg in command)
