"""Where results go, progress lines, the machine and how busy it is, statistics, and the
markdown/JSON results."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TMP_DIR = RESULTS_DIR / "tmp"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pytest_running() -> bool:
    found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, check=False)
    return found.returncode == 0


def other_tritonservers() -> int:
    """tritonserver processes already running (someone else's: they share the CPU)."""
    found = subprocess.run(
        ["pgrep", "-f", "bin/tritonserver"], capture_output=True, text=True, check=False
    )
    return len(found.stdout.split())


def noisy(own_tritonservers: int) -> bool:
    """pytest, or a tritonserver besides this run's `own_tritonservers`, runs on this machine."""
    return pytest_running() or other_tritonservers() > own_tritonservers


class RunMeter:
    """A run's wall time, CPU use and whether other work shared the machine: started when made
    (saying so when pytest or another tritonserver runs already), `end()` the fields every
    result records."""

    def __init__(self) -> None:
        self.started, self.counters = time.perf_counter(), cpu_times()
        self.noisy = noisy(own_tritonservers=0)
        if self.noisy:
            log("WARNING: pytest or another tritonserver is running here; timings will be noisy")

    def check(self, own_tritonservers: int) -> None:
        """Look again, with this run's own tritonservers running."""
        self.noisy |= noisy(own_tritonservers)

    def end(self) -> dict[str, Any]:
        return {
            "noisy": self.noisy,
            "load_average_at_end": os.getloadavg(),
            "total_s": time.perf_counter() - self.started,
            "cpu": cpu_use(self.counters, cpu_times()),
        }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def gpu() -> str:
    if shutil.which("nvidia-smi"):
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip().replace("\n", ", ")
    return "none"


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq
    steal ...), to tell afterwards how busy the machine was and how much the host stole."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return []


def cpu_use(before: list[int], after: list[int]) -> dict[str, float]:
    if not before or not after:
        return {}
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta) or 1
    return {"busy": 1 - (delta[3] + delta[4]) / total, "steal": delta[7] / total}


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def cpu_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX): where it does, the
    model encodes live streams in bfloat16 by default; elsewhere everything runs in float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_cpu_path() -> str:
    """The widest vector instructions torch's CPU kernels use in this process (and in the
    model's, which inherits the environment): "AVX512", "AVX2", ... ("?" without torch)."""
    try:
        import torch
    except ImportError:
        return "?"
    return torch.backends.cpu.get_cpu_capability()


def machine(triton_version: str, threads: int | None = None) -> dict[str, Any]:
    """The machine and the versions; `threads`: the peers' threads, where peers run."""
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpu_bfloat16": cpu_bfloat16(),
        "torch_cpu_path": torch_cpu_path(),
        "cores": os.cpu_count(),
        "gpu": gpu(),
        **({} if threads is None else {"threads": threads}),
        "load_average_at_start": os.getloadavg(),
        "versions": {
            "python": platform.python_version(),
            "torch": version("torch"),
            "openai-whisper": version("openai-whisper"),
            "faster-whisper": version("faster-whisper"),
            "ctranslate2": version("ctranslate2"),
            "tritonserver": triton_version,
            "nvidia-pytriton": version("nvidia-pytriton"),
            "aiohttp": version("aiohttp"),
        },
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def fmt_spread(stats: dict[str, float], digits: int = 2) -> str:
    if len(stats["runs"]) == 1:
        return f"{stats['median']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def file_mode_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        ratio = "" if r["engine"] == "hermes service" else f"{r['service_over_peer']:.2f}×"
        batches = f"{r['inferences']:g} / {r['executions']:g}" if "executions" in r else ""
        rows.append(
            [
                f"{r['item']} ({r['duration_s']:.1f} s)",
                r["engine"],
                fmt_spread(r["wall_s"]),
                f"{r['rtf']:.3f}",
                f"{100 * r['wer']:.1f} %",
                ratio,
                batches,
            ]
        )
    return table(
        [
            "audio",
            "engine",
            "wall s, median (min–max)",
            "RTF",
            "WER",
            "service / peer (wall)",
            "Triton inferences / executions per run",
        ],
        rows,
    )


def cores_busy(level: dict) -> str:
    """A streaming level's cores busy: the gateway (with its event loop's share, when it ran
    in a process of its own) and Triton."""
    if "cores_busy" not in level:
        return "–"
    cores = level["cores_busy"]
    loop = level.get("gateway_loop_cores_busy")
    gateway = f"{cores['gateway']:.2f}" + ("" if loop is None else f" ({loop:.2f})")
    return f"{gateway} / {cores['triton']:.2f}"


def streaming_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        rows.append(
            [
                str(r["streams"]),
                str(r["samples"]["finals"]),
                f"{r['final_latency_s']['p50']:.2f} / {r['final_latency_s']['p95']:.2f}",
                f"{r['word_final_latency_s']['p50']:.2f} / {r['word_final_latency_s']['p95']:.2f}",
                f"{r['word_shown_latency_s']['p50']:.2f} / {r['word_shown_latency_s']['p95']:.2f}",
                f"{100 * r['wer']['median']:.1f} % (max {100 * r['wer']['max']:.1f} %)",
                f"{100 * r['file_mode_wer']:.1f} %",
                f"{r['tail_s']['max']:.2f}",
                "yes" if r["kept_up"] else "**no**",
                f"{r['cpu_s_per_audio_s']:.3f}" if "cpu_s_per_audio_s" in r else "–",
                cores_busy(r),
                r.get("gateway_loop_lag", "–"),
                f"{r['inferences']} / {r['executions']}" if "executions" in r else "–",
            ]
        )
    return table(
        [
            "streams",
            "finals",
            "final latency p50 / p95 s",
            "word → final p50 / p95 s",
            "word → shown p50 / p95 s",
            "stream WER",
            "file WER",
            "max tail s",
            "kept up",
            "CPU s per audio s",
            "cores busy: gateway (its event loop) / Triton",
            "gateway's event loop lag mean / p95 ms",
            "Triton inferences / executions",
        ],
        rows,
    )


def capacity_table(section: dict[str, Any]) -> str:
    """hermes and its peer side by side, one row per system and number of streams."""
    rows = []
    for system, levels in section["levels"].items():
        for r in levels:
            final, shown = r["final_latency_s"], r["word_shown_latency_s"]
            rows.append(
                [
                    system,
                    str(r["streams"]),
                    f"{final['p50']:.2f} / {final['p95']:.2f} / {final['max']:.2f}",
                    f"{shown['p50']:.2f}",
                    f"{100 * r['wer_vs_file']['median']:.1f} % "
                    f"(max {100 * r['wer_vs_file']['max']:.1f} %)",
                    f"{100 * r['wer']['median']:.1f} %",
                    f"{r['tail_s']['median']:.1f} / {r['tail_s']['max']:.1f}",
                    "yes" if r["kept_up"] else "**no**",
                    f"{r['cpu_s_per_audio_s']:.2f}",
                    f"{r['inferences']} / {r['executions']}" if "executions" in r else "–",
                ]
            )
    return table(
        [
            "system",
            "streams",
            "final latency p50 / p95 / max s",
            "partial p50 s",
            "WER vs file mode",
            "WER vs reference",
            "lag at end median / max s",
            "kept up",
            "CPU s per audio s",
            "Triton inferences / executions",
        ],
        rows,
    )


def throughput_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        rows.append(
            [
                str(r["uploads"]),
                fmt_spread(r["wall_s"]),
                fmt_spread(r["audio_s_per_s"], 1),
                f"{r['inferences']} / {r['executions']}",
                f"{r['mean_batch']:.2f}",
                f"{100 * r['wer_max']:.1f} %",
            ]
        )
    return table(
        [
            "concurrent uploads",
            "wall s",
            "audio s per wall s",
            "Triton inferences / executions",
            "mean batch",
            "max WER",
        ],
        rows,
    )


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    def percent(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    return table(
        [
            "audio",
            "s",
            "words",
            "hermes WER",
            "transcribe() WER",
            "difference",
            "same text twice",
            "live stream WER (3 s beat)",
            "hermes wall s",
            "transcribe() wall s",
            "Triton inferences / executions",
        ],
        [
            [
                r["condition"],
                f"{r['duration_s']:.1f}",
                str(r["words"]),
                percent(r["wer"]),
                percent(r["transcribe_wer"]),
                f"{100 * (r['wer'] - r['transcribe_wer']):+.1f}",
                "yes" if r["identical"] else "**no**",
                percent(r["stream_wer"]),
                fmt_spread(r["wall_s"]),
                f"{r['transcribe_wall_s']:.2f}",
                f"{r['inferences']} / {r['executions']}",
            ]
            for r in rows
        ],
    )


def accuracy_summary(rows: list[dict[str, Any]]) -> str:
    total = sum(r["words"] for r in rows)
    mean = sum(r["wer"] * r["words"] for r in rows) / total
    reference = sum(r["transcribe_wer"] * r["words"] for r in rows) / total
    return (
        f"Over all {total} words (weighted by words): hermes {100 * mean:.1f} %, "
        f"transcribe() {100 * reference:.1f} %; empty answers: "
        f"{sum(1 for r in rows if not r['texts']['service'][0].strip())}."
    )


NOISY_NOTE = "; **pytest or another tritonserver ran during this run: noisy**"


def load_text(load_average: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load_average)


def run_summary(results: dict[str, Any]) -> str:
    """The command, its duration and how busy the machine was: the last line of a header."""
    return (
        f"Command: `{results['command']}`; total {results['total_s']:.0f} s; CPU busy "
        f"{100 * results['cpu'].get('busy', 0):.0f} %, stolen by the host "
        f"{100 * results['cpu'].get('steal', 0):.1f} % over the run."
    )


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    parts = [
        f"# hermes benchmark, {results['date']} on {m['host']}",
        "",
        f"{m['cpu']}, {m['cores']} cores"
        f" ({'with' if m.get('cpu_bfloat16') else 'without'} native bfloat16"
        + (f"; torch's CPU path {m['torch_cpu_path']}" if m.get("torch_cpu_path") else "")
        + f"), GPU: {m['gpu']}; "
        f"{m['threads']} threads for every engine; "
        f"Python {v['python']}, torch {v['torch']}, openai-whisper {v['openai-whisper']}, "
        f"faster-whisper {v['faster-whisper']} (CTranslate2 {v['ctranslate2']}), "
        f"tritonserver {v['tritonserver']} (nvidia-pytriton {v['nvidia-pytriton']}). "
        f"Model tiny.en. Load average at start: {load_text(m['load_average_at_start'])}"
        + (NOISY_NOTE if results.get("noisy") else "")
        + ".",
        "",
        run_summary(results),
    ]
    if results.get("file_mode"):
        parts += ["", "## File mode", "", file_mode_table(results["file_mode"])]
    if rows := results.get("accuracy"):
        parts += [
            "",
            "## Accuracy against `transcribe()` on the same weights",
            "",
            accuracy_table(rows),
            "",
            accuracy_summary(rows),
        ]
    if section := results.get("streaming"):
        parts += [
            "",
            (
                f"## Streaming capacity ({section['item']}, {section['duration_s']:.1f} s, "
                f"paced in real time, {section['repeat']} run(s) of each level)"
            ),
            "",
            capacity_table(section),
        ]
        if section.get("plot"):
            parts += ["", f"![final latency against the number of streams]({section['plot']})"]
    if results.get("throughput"):
        parts += [
            "",
            f"## Throughput ({results['throughput'][0]['item']} uploads)",
            "",
            throughput_table(results["throughput"]),
        ]
    return "\n".join(parts) + "\n"


def file_stem(results: dict[str, Any], prefix: str = "") -> str:
    return f"{prefix}{results['date']}-{results['machine']['host']}"


def write(
    results: dict[str, Any],
    directory: Path,
    *,
    prefix: str = "",
    render: Callable[[dict[str, Any]], str] = markdown,
) -> tuple[Path, Path]:
    """`<prefix><date>-<host>.json` and `.md` (the markdown `render` makes) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = file_stem(results, prefix)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path.write_text(render(results))
    return json_path, md_path


def verdict_main(
    run: Callable[[], Awaitable[dict[str, Any]]],
    output: Path,
    prefix: str,
    render: Callable[[dict[str, Any]], str],
) -> int:
    """A benchmark with a verdict (`passed` in its results): run, printed, written under
    `output`; the exit status 1 when it failed."""
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run())
    print(render(results))
    json_path, md_path = write(results, output, prefix=prefix, render=render)
    log(f"wrote {json_path} and {md_path}; verdict: {'pass' if results['passed'] else 'FAIL'}")
    return 0 if results["passed"] else 1


# Environment variables that choose the CPU code path (torch's kernels, oneDNN's, MKL's): a
# run held to AVX2 on a CPU that has more is told apart only by them.
CPU_PATH_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def command_line(module: str = "benchmarks") -> str:
    """The command as run, preceded by the CPU-path variables that were set."""
    settings = [f"{name}={os.environ[name]}" for name in CPU_PATH_VARIABLES if name in os.environ]
    return " ".join([*settings, f"python -m {module}", *sys.argv[1:]])
