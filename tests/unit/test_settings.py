"""Configuration: defaults, then HERMES_* variables, then flags; invalid values refused."""

from __future__ import annotations

import pytest

from gateway.settings import Settings, from_env, load


def test_environment_then_flags_override_the_defaults() -> None:
    environ = {"HERMES_PORT": "9000", "HERMES_TRITON_URL": "triton:8001", "HERMES_MAX_UPLOAD_MB": "5"}
    assert from_env(environ) == Settings(port=9000, triton_url="triton:8001", max_upload_mb=5.0)
    settings = load(["--port", "9100", "--max-streams", "2"], environ)
    assert (settings.port, settings.triton_url, settings.max_streams) == (9100, "triton:8001", 2)
    assert settings.max_upload_bytes == 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HERMES_PORT": "eighty"}, "HERMES_PORT: cannot read 'eighty' as int"),
        ({"HERMES_WINDOW_SECONDS": "45"}, "window_seconds must be at most 30"),
        ({"HERMES_MAX_STREAMS": "0"}, "must be positive"),
        ({"HERMES_TRITON_URL": "triton"}, "Triton endpoint 'triton' is not host:port"),
        ({"HERMES_TRITON_URL": "a:8001,b:http"}, "Triton endpoint 'b:http' is not host:port"),
    ],
)
def test_invalid_values_are_refused_with_the_reason(environ, message) -> None:
    with pytest.raises(ValueError, match=message):
        load([], environ)
