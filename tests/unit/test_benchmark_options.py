"""The benchmarks' command lines and the model repositories they serve variants from."""

from __future__ import annotations

import itertools
import re
import sys
import types
from pathlib import Path

import pytest

from benchmarks import accuracy
from benchmarks.__main__ import model_repository, parse_args
from benchmarks.gpu import parse_args as gpu_parse_args
from benchmarks.pipeline import SendTimes, sent_spread
from benchmarks.stack import Executions, settings_flags, settled
from benchmarks.transport import parse_args as transport_parse_args
from benchmarks.transport import stand_in_repository
from gateway.core.transcript import Segment
from gateway.server import settings as gateway_settings
from gateway.tools.local_triton import DEFAULT_MODEL_REPOSITORY, model_repository_with


def parameter(config: str, key: str) -> str:
    return re.search(rf'key: "{key}".*\n\s*value: {{ string_value: "([^"]*)"', config)[1]


def test_a_variant_repository_changes_only_what_it_names(tmp_path: Path) -> None:
    repository = model_repository_with(
        tmp_path / "variant",
        {"low_latency_bfloat16": "false", "cuda_graphs": "false"},
        max_batch_size=64,
    )
    original = (DEFAULT_MODEL_REPOSITORY / "whisper" / "config.pbtxt").read_text()
    config = (repository / "whisper" / "config.pbtxt").read_text()
    assert parameter(config, "low_latency_bfloat16") == "false"
    assert parameter(config, "cuda_graphs") == "false"
    assert "\nmax_batch_size: 64\n" in config
    assert parameter(config, "weights") == parameter(original, "weights")
    assert len(config.splitlines()) == len(original.splitlines())
    assert (repository / "whisper" / "1" / "model.py").is_file()  # the real version, linked


def test_a_variant_of_the_speaker_model_leaves_whisper_as_it_is(tmp_path: Path) -> None:
    repository = model_repository_with(tmp_path, {"cpu_threads": "0"}, model="speaker")
    config = (repository / "speaker" / "config.pbtxt").read_text()
    assert parameter(config, "cpu_threads") == "0"
    assert (repository / "speaker" / "1" / "model.py").is_file()
    assert (repository / "whisper").resolve() == (DEFAULT_MODEL_REPOSITORY / "whisper").resolve()


def test_a_value_is_written_as_given_backslashes_and_all(tmp_path: Path) -> None:
    # a weights path on Windows, say: no backslash read as a group reference or an escape
    repository = model_repository_with(tmp_path, {"weights": r"C:\w\1\tiny.en.pt"})
    config = (repository / "whisper" / "config.pbtxt").read_text()
    assert parameter(config, "weights") == r"C:\w\1\tiny.en.pt"


def test_a_parameter_the_model_does_not_have_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_such_switch"):
        model_repository_with(tmp_path, {"no_such_switch": "true"})


def test_the_default_run_is_the_smaller_grid_and_full_the_whole_one() -> None:
    default, full, quick = parse_args([]), parse_args(["--full"]), parse_args(["--quick"])
    assert (default.streams, default.peer_stream_levels, default.stream_repeat) == (
        [1, 4, 8],
        [1, 4],
        1,
    )
    assert default.conditions == accuracy.DEFAULT and len(accuracy.DEFAULT) == 8
    assert (full.streams, full.peer_stream_levels, full.stream_repeat) == (
        [1, 2, 4, 8, 16],
    ) * 2 + (2,)
    assert full.conditions == accuracy.CONDITIONS and full.uploads == [1, 2, 4, 8]
    assert quick.conditions == accuracy.QUICK and quick.no_composite
    assert parse_args(["--full", "--streams", "2"]).streams == [2]  # explicit flags win
    none = parse_args(["--streams", "", "--fast-streams", "", "--uploads", ""])
    assert (none.streams, none.fast_streams, none.uploads, none.peer_stream_levels) == ([],) * 4
    assert default.model_parameters == {}
    assert model_repository(default.model_parameters) == DEFAULT_MODEL_REPOSITORY


def test_model_parameters_serve_a_variant_repository() -> None:
    args = parse_args(["--model-parameter", "low_latency_bfloat16=false"])
    assert args.model_parameters == {"low_latency_bfloat16": "false"}
    config = (model_repository(args.model_parameters) / "whisper" / "config.pbtxt").read_text()
    assert parameter(config, "low_latency_bfloat16") == "false"
    with pytest.raises(SystemExit):
        parse_args(["--model-parameter", "low_latency_bfloat16"])
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--full"])


def test_the_gpu_run_tries_graphs_off_then_on_by_default() -> None:
    args = gpu_parse_args(["--audio", "/tmp/audio"])
    assert args.graphs == [False, True] and args.files[-1] == 64 and args.step == 1.0
    assert gpu_parse_args(["--audio", "/tmp/a", "--graphs", "off"]).graphs == [False]
    with pytest.raises(SystemExit):
        gpu_parse_args(["--audio", "/tmp/a", "--graphs", "maybe"])


def test_the_soaks_gateway_process_gets_flags_hermes_serve_reads() -> None:
    """The flags for `hermes serve` name only settings it takes (not the endpoints derived
    from `triton_url`) and give back the same settings."""
    settings = gateway_settings.Settings(
        port=9123, triton_url="127.0.0.1:49179", max_uploads_per_client=64
    )
    assert gateway_settings.load(settings_flags(settings), environ={}) == settings


def test_a_runs_executions_are_the_difference_of_triton_counters() -> None:
    """Batch sizes a run added, and the seconds they took; sizes it did not run are left out."""
    before = Executions({2: (1, 1.5), 16: (3, 9.0)})
    after = Executions({2: (1, 1.5), 7: (1, 3.0), 16: (7, 21.0)})
    run = after.since(before)
    assert run.by_size == {7: (1, 3.0), 16: (4, 12.0)}
    assert run.seconds == 15.0
    assert (run.executions, run.inferences) == (5, 71)
    assert run.sizes() == "7×1, 16×4"
    assert Executions({}).since(before).sizes() == ""


def test_executions_are_read_from_tritons_batch_statistics() -> None:
    def duration(count: int, ns: int) -> dict:
        return {"count": str(count), "ns": str(ns)}

    batch = {
        "batch_size": "12",
        "compute_input": duration(2, 10_000_000),
        "compute_infer": duration(2, 3_000_000_000),
        "compute_output": duration(2, 20_000_000),
    }
    stats = {"model_stats": [{"name": "whisper", "batch_stats": [batch]}]}
    assert Executions.of(stats).by_size == {12: (2, pytest.approx(3.03))}
    assert Executions.of({"model_stats": [{"name": "whisper"}]}).by_size == {}


def test_the_transport_run_serves_the_stand_in_under_the_projects_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = transport_parse_args(
        ["--windows", "", "--uploads", "1,16", "--execution-ms", "300", "--max-batch", "32"]
        + ["--streams", "16,48"]
    )
    assert (args.windows, args.uploads, args.execution_ms) == ([], [1, 16], 300.0)
    assert args.streams == [16, 48]
    assert transport_parse_args([]).uploads == transport_parse_args([]).streams == []
    repository = stand_in_repository(tmp_path / "transport", args.max_batch, 0.3)
    config = (repository / "whisper" / "config.pbtxt").read_text()
    original = (DEFAULT_MODEL_REPOSITORY / "whisper" / "config.pbtxt").read_text()
    assert "max_batch_size: 32" in config
    assert config == re.sub(r"max_batch_size: \d+", "max_batch_size: 32", original)
    assert not (repository / "whisper" / "1" / "weights").exists()  # Whisper is not loaded
    # the stand-in's text covers the window with distinct words, as the file checks want
    model: dict = {}
    source = (repository / "whisper" / "1" / "model.py").read_text()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("pb_utils"))
    exec(compile(source, "model.py", "exec"), model)
    assert model["EXECUTION_S"] == 0.3 and "TritonPythonModel" in model
    found = [Segment.from_json(item) for item in model["segments"](27.3)]
    assert [(s.start, s.end) for s in found][0] == (0.0, 5.0) and found[-1].end == 27.3
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    words = " ".join(s.text for s in found).split()
    assert len(words) == len(set(words)) >= 3 * 27
    # each word timed inside its segment, in order: a live stream's agreement commits them
    for segment in found:
        assert [w.word for w in segment.words] == [" " + w for w in segment.text.split()]
        times = [t for w in segment.words for t in (w.start, w.end)]
        assert times == sorted(times) and segment.start <= times[0] and times[-1] <= segment.end


def test_send_times_tell_when_the_windows_went_out() -> None:
    times = SendTimes(backend=None, started=0.0)  # type: ignore[arg-type]
    times.sent += [0.4, 0.1, 2.0]
    assert times.spread() == {"first": 0.1, "median": 0.4, "last": 2.0}
    assert sent_spread(times.spread()) == "0.10 / 0.40 / 2.00"


async def test_statistics_are_read_until_they_stop_changing() -> None:
    """The last execution of a run is counted after its answers went out: a read that still
    changes is read again."""
    reads = iter([{"count": 1}, {"count": 2}, {"count": 2}, {"count": 3}])

    async def read() -> dict:
        return next(reads)

    assert await settled(read) == {"count": 2}
