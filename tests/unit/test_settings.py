"""Configuration: defaults, then HERMES_* variables, then flags; invalid values refused."""

from __future__ import annotations

import pytest

from gateway.server.settings import Settings, from_env, load


def test_environment_then_flags_override_the_defaults() -> None:
    environ = {
        "HERMES_PORT": "9000",
        "HERMES_TRITON_URL": "triton:8001",
        "HERMES_MAX_UPLOAD_MB": "5",
    }
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


def test_access_settings_from_the_environment(tmp_path) -> None:
    key_file = tmp_path / "api-keys"
    key_file.write_text("# one key per line\nfrom-the-file\n")
    environ = {
        "HERMES_API_KEYS": "from-the-variable",
        "HERMES_API_KEYS_FILE": str(key_file),
        "HERMES_ALLOWED_ORIGINS": "https://app.example.com",
        "HERMES_CORS_ORIGINS": "*",
        "HERMES_LOG_FORMAT": "json",
        "HERMES_MAX_STREAMS_PER_CLIENT": "2",
    }
    settings = load(["--max-streams-per-client", "3"], environ)
    assert (settings.api_keys, settings.api_keys_file) == ("from-the-variable", str(key_file))
    assert (settings.allowed_origins, settings.cors_origins) == ("https://app.example.com", "*")
    assert (settings.log_format, settings.max_streams_per_client) == ("json", 3)
    assert "from-the-variable" not in repr(settings)


def test_access_is_off_by_default() -> None:
    defaults = load([], {})
    assert (defaults.api_keys, defaults.api_keys_file, defaults.cors_origins) == ("", "", "")
    assert (defaults.allowed_origins, defaults.log_format) == ("", "text")
    assert 0 < defaults.max_streams_per_client < defaults.max_streams


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"HERMES_MAX_AUDIO_SECONDS": "14400"},
            "max_audio_seconds must fit max_decoded_audio_mb: 14400 s decode to 879 MB",
        ),
        ({"HERMES_LOG_FORMAT": "xml"}, "log_format must be one of text, json, got 'xml'"),
        ({"HERMES_MAX_STREAMS_PER_CLIENT": "0"}, "max_streams_per_client must be positive"),
        (
            {"HERMES_ALLOWED_ORIGINS": "app.example.com"},
            "allowed_origins: 'app.example.com' is not an origin",
        ),
        (
            {"HERMES_CORS_ORIGINS": "https://a.example/api"},
            "cors_origins: 'https://a.example/api' is not an origin",
        ),
        (
            {"HERMES_API_KEYS_FILE": "/nonexistent/keys"},
            "api_keys_file: cannot read /nonexistent/keys",
        ),
        ({"HERMES_API_KEYS": "a good one"}, "API key #1 has spaces"),
    ],
)
def test_invalid_access_settings_are_refused(environ, message) -> None:
    with pytest.raises(ValueError, match=message):
        load([], environ)


def test_an_empty_key_file_is_refused_rather_than_turning_authentication_off(tmp_path) -> None:
    key_file = tmp_path / "api-keys"
    key_file.write_text("\n# keys go here\n")
    with pytest.raises(ValueError, match="holds no key"):
        load([], {"HERMES_API_KEYS_FILE": str(key_file)})


def test_the_shortest_stream_step_cannot_exceed_the_longest() -> None:
    with pytest.raises(ValueError, match="stream_min_step_seconds must be at most"):
        load([], {"HERMES_STREAM_STEP_SECONDS": "1", "HERMES_STREAM_MIN_STEP_SECONDS": "2"})


def test_the_worst_case_memory_adds_up_what_clients_can_make_the_gateway_hold() -> None:
    """300 MiB of its own, 20 bodies of 100 MiB, 768 MiB of decoded audio, 16 streams of 60 s
    of float32: the README's 3.1 GiB; halving the uploads waiting takes 8 bodies off."""
    assert Settings().worst_case_memory_mb == pytest.approx(300 + 2000 + 768 + 58.6, abs=0.1)
    fewer = Settings(max_uploads_waiting=8)
    assert Settings().worst_case_memory_mb - fewer.worst_case_memory_mb == 800
