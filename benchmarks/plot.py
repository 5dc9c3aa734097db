"""The streaming capacity plot: final latency against the number of concurrent streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def latency_against_streams(section: dict[str, Any], path: Path) -> None:
    """p50 (solid) and p95 (dashed) final latency of every system, one colour each; a hollow
    marker where that level did not keep up with the audio."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for (system, levels), colour in zip(
        section["levels"].items(), ("C0", "C2", "C3", "C1"), strict=False
    ):
        streams = [r["streams"] for r in levels]
        for quantile, style in (("p50", "-"), ("p95", "--")):
            values = [r["final_latency_s"][quantile] for r in levels]
            axes.plot(streams, values, style, color=colour, label=f"{system}, {quantile}")
            for x, y, r in zip(streams, values, levels, strict=True):
                axes.plot(
                    x, y, "o", color=colour, markerfacecolor=colour if r["kept_up"] else "white"
                )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    all_streams = sorted({r["streams"] for levels in section["levels"].values() for r in levels})
    axes.set_xticks(all_streams, [str(n) for n in all_streams])
    axes.set_xlabel("concurrent real-time streams")
    axes.set_ylabel("final latency, s (log)")
    axes.set_title(
        f"{section['item']} ({section['duration_s']:.0f} s) streamed in real time; "
        "hollow: fell behind",
        fontsize=9,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
