"""The clustering constants of diarization, chosen on composites the benchmark does not score:
`python -m benchmarks.diarization_tuning [--output DIR]`.

Other pieces and orders of the test clips' voices, and other espeak-ng voices reading other
Harvard sentences, than `benchmarks.diarization` measures. Their speech goes through the served
speaker model once (a local Triton, as the gateway sends it: `embed_speech`); then every
combination of the average-linkage threshold, the small-cluster size and the small-cluster
similarity is scored on the speaker turns alone (DER with the 0.25 s collar, and whether the
count of speakers is right). Writes `diarization-tuning.json`, best first, to `--output`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from pathlib import Path

import numpy as np

from benchmarks import speech
from benchmarks.composite import espeak_turns, speaker_composite
from benchmarks.diarization import COLLAR_S, error_rate, voices
from benchmarks.stack import local_triton, triton_pool
from gateway.core.diarization import cluster, merge_small_clusters, speaker_turns
from gateway.modes.audio import SAMPLE_RATE
from gateway.modes.diarize import Speech, embed_speech
from gateway.server.settings import Settings

SENTENCES = speech.SENTENCES[16:28]  # twelve Harvard sentences of lists 2 and 3
THRESHOLDS = (0.55, 0.58, 0.6, 0.62, 0.65, 0.7)
SMALL_WINDOWS = (1, 3, 4, 5, 6, 8)  # 1: no cluster is small
SMALL_SIMILARITIES = (0.6, 0.65, 0.7, 0.72, 0.75)


def plans() -> dict[str, list[tuple[str, np.ndarray]]]:
    clips = voices()
    jfk, harvard, left, right = (clips[name] for name in ("jfk", "harvard", "left", "right"))
    second = SAMPLE_RATE
    return {
        "reader, JFK, left": [
            ("harvard", harvard[24 * second :]),
            ("jfk", jfk),
            ("harvard", harvard[: 8 * second]),
            ("left", left),
            ("jfk", jfk[: 5 * second]),
        ],
        "right, reader, JFK": [
            ("right", right),
            ("harvard", harvard[8 * second : 14 * second]),
            ("right", right),
            ("jfk", jfk[3 * second :]),
            ("harvard", harvard[14 * second : 20 * second]),
        ],
        "JFK, left, right": [
            ("jfk", jfk),
            ("left", left),
            ("right", right),
            ("jfk", jfk[6 * second :]),
            ("left", left),
        ],
        "reader and left, short turns": [
            ("harvard", harvard[20 * second : 23 * second]),
            ("left", left),
            ("harvard", harvard[26 * second : 30 * second]),
            ("left", left),
        ],
        "espeak-ng en-gb+m1, en-us+f2": espeak_turns(("en-gb+m1", "en-us+f2"), SENTENCES, 8, 0),
        "espeak-ng en+klatt, en-us+Alicia": espeak_turns(
            ("en+klatt", "en-us+Alicia"), SENTENCES, 8, 3
        ),
        "espeak-ng en-us+m7, en-us+steph, en-us+david": espeak_turns(
            ("en-us+m7", "en-us+steph", "en-us+david"), SENTENCES, 9, 5
        ),
        "espeak-ng en-us+f2, en+klatt, en-us+steph": espeak_turns(
            ("en-us+f2", "en+klatt", "en-us+steph"), SENTENCES, 9, 1
        ),
    }


def score(speech: Speech, reference: list, seconds: float, constants: tuple) -> tuple[float, int]:
    """DER of the speaker turns (collar 0.25 s) and the count of speakers found."""
    threshold, small_windows, small_similarity = constants
    embeddings = np.array([window.embedding for window in speech.windows])
    labels = merge_small_clusters(
        embeddings,
        cluster(embeddings, threshold=threshold),
        min_windows=small_windows,
        similarity=small_similarity,
    )
    turns = speaker_turns(speech.regions, speech.windows, labels)
    answer = [(str(turn.speaker), turn.start, turn.end) for turn in turns]
    return error_rate(reference, answer, seconds, COLLAR_S)["der"], len(set(labels.tolist()))


async def run(output: Path) -> list[dict[str, object]]:
    output.mkdir(parents=True, exist_ok=True)
    composites = []
    async with local_triton(output / "diarization-tuning-triton.log") as triton:
        async with triton_pool(Settings(triton_url=triton.grpc_url)) as pool:
            for name, plan in plans().items():
                audio, reference = speaker_composite(plan)
                speech = await embed_speech(pool, audio)
                speakers = len({speaker for speaker, _ in plan})
                composites.append((name, speech, reference, audio.size / SAMPLE_RATE, speakers))
    results = []
    for constants in itertools.product(THRESHOLDS, SMALL_WINDOWS, SMALL_SIMILARITIES):
        scored = [
            (score(speech, reference, seconds, constants), speakers)
            for _, speech, reference, seconds, speakers in composites
        ]
        results.append(
            {
                "threshold": constants[0],
                "small_cluster_windows": constants[1],
                "small_cluster_similarity": constants[2],
                "wrong_counts": sum(found != speakers for (_, found), speakers in scored),
                "worst_der": round(max(der for (der, _), _ in scored), 4),
                "mean_der": round(float(np.mean([der for (der, _), _ in scored])), 4),
            }
        )
    results.sort(key=lambda r: (r["wrong_counts"], r["worst_der"], r["mean_der"]))
    (output / "diarization-tuning.json").write_text(json.dumps(results, indent=2) + "\n")
    for result in results[:10]:
        print(json.dumps(result))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/tmp"))
    asyncio.run(run(parser.parse_args().output))


if __name__ == "__main__":
    main()
