"""Run NVIDIA's real `tritonserver` locally, without Docker, from the nvidia-pytriton wheel.

The wheel ships the server binary, the Python backend and one backend stub per Python
version. We assemble a backend directory (backend + the stub for this interpreter), start
the server on the model repository with the wheel's libraries on `LD_LIBRARY_PATH` and this
environment's `bin/` first on `PATH` (the stub runs the first `python` it finds, so the models
import torch and whisper from our virtual environment), wait until its models (whisper and
speaker) are ready, and
stop the whole process group on exit so no orphan stub survives.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_REPOSITORY = PROJECT_ROOT / "model_repository"
DEFAULT_WORK_DIR = PROJECT_ROOT / ".cache" / "triton"
# The weights to serve when no --weights is given (the committed config names tiny.en); the
# same variable the Triton image and the Compose file read (deploy/triton/serve.py).
WEIGHTS_ENV = "HERMES_MODEL"


class TritonLaunchError(RuntimeError):
    """tritonserver could not be started or its model did not become ready."""


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


@dataclass(frozen=True)
class TritonDistribution:
    """Where the nvidia-pytriton wheel keeps the server, its backends and libraries."""

    root: Path

    @classmethod
    def installed(cls) -> TritonDistribution:
        try:
            import pytriton
        except ImportError as exc:
            raise TritonLaunchError(
                "nvidia-pytriton is not installed (pip install nvidia-pytriton)"
            ) from exc
        return cls(Path(pytriton.__file__).resolve().parent)

    @property
    def server(self) -> Path:
        return self.root / "tritonserver" / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "tritonserver" / "backends" / "python"

    @property
    def caches(self) -> Path:
        return self.root / "tritonserver" / "caches"

    def stub(self, python_version: str) -> Path:
        return (
            self.root
            / "tritonserver"
            / "python_backend_stubs"
            / python_version
            / "triton_python_backend_stub"
        )

    @property
    def libraries(self) -> Path:
        return self.root.parent / "nvidia_pytriton.libs"


def assemble_backend_dir(distribution: TritonDistribution, work_dir: Path) -> Path:
    """A backend directory with the Python backend and the stub matching this interpreter."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = distribution.stub(version)
    if not stub.is_file():
        raise TritonLaunchError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    backend_dir = work_dir / "backends"
    python_dir = backend_dir / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in [
        *distribution.python_backend.glob("*.so"),
        *distribution.python_backend.glob("*.py"),
        stub,
    ]:
        target = python_dir / source.name
        if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
            shutil.copy2(source, target)
    return backend_dir


def server_environment(distribution: TritonDistribution) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libraries = [str(distribution.libraries), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(path for path in libraries if path)
    return env


# Triton's APIs that no client of hermes needs and that unauthenticated attackers chain
# (shared-memory registration, model load/unload, trace and log settings: CVE-2025-23319,
# -23320, -23334 in Triton before 25.07): open only with the header `triton-admin-key`, whose
# value is HERMES_TRITON_ADMIN_KEY, or unknown to anyone (random per start) without it. The
# Triton image does the same (deploy/triton/serve.py).
RESTRICTED_APIS = "shared-memory,model-repository,trace,logging"
ADMIN_KEY_HEADER = "triton-admin-key"


def restricted_api_args(admin_key: str) -> list[str]:
    rule = f"{RESTRICTED_APIS}:{ADMIN_KEY_HEADER}={admin_key}"
    return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]


def model_repository_with(
    directory: Path,
    parameters: Mapping[str, str],
    max_batch_size: int | None = None,
    source: Path = DEFAULT_MODEL_REPOSITORY,
    model: str = "whisper",
) -> Path:
    """A model repository in `directory` serving the project's models, `model` with some of
    its config's `parameters` (and `max_batch_size`) set otherwise: the version directory
    linked, the config copied with those values changed."""
    model_dir = source / model
    config = (model_dir / "config.pbtxt").read_text()
    changes = [
        (
            f"parameter {key!r}",
            rf'(key: "{re.escape(key)}".*\n\s*value: {{ string_value: ")[^"]*(")',
            value,
        )
        for key, value in parameters.items()
    ]
    if max_batch_size is not None:
        changes.append(("max_batch_size", r"(\nmax_batch_size: )\d+()", str(max_batch_size)))
    for name, pattern, value in changes:
        # the value between the pattern's two groups (a backslash in it taken as it is)
        template = r"\g<1>" + value.replace("\\", "\\\\") + r"\g<2>"
        config, count = re.subn(pattern, template, config)
        if count != 1:
            raise ValueError(f"the {model} model's config.pbtxt has no {name} to set")
    changed = directory / model
    changed.mkdir(parents=True, exist_ok=True)
    (changed / "config.pbtxt").write_text(config)
    _link(changed / "1", model_dir / "1")
    for other in served_models(source):  # the models beside it, as they are
        if other != model:
            _link(directory / other, source / other)
    return directory


def _link(link: Path, target: Path) -> None:
    if not link.exists():
        try:
            link.symlink_to(target.resolve(), target_is_directory=True)
        except FileExistsError:  # another launcher made it at the same moment
            pass


def served_models(model_repository: Path) -> list[str]:
    """The models of a repository (its folders with a config.pbtxt): whisper, speaker."""
    return sorted(path.parent.name for path in model_repository.glob("*/config.pbtxt"))


def configured_weights(model_repository: Path = DEFAULT_MODEL_REPOSITORY) -> str:
    """The export the repository's config.pbtxt serves (its `weights` parameter)."""
    config = (model_repository / "whisper" / "config.pbtxt").read_text()
    match = re.search(r'key: "weights".*\n\s*value: { string_value: "([^"]*)"', config)
    if match is None:
        raise TritonLaunchError(f"{model_repository}/whisper/config.pbtxt names no weights")
    return match[1]


def repository_serving(
    weights: str | None,
    model_repository: Path = DEFAULT_MODEL_REPOSITORY,
    work_dir: Path = DEFAULT_WORK_DIR,
) -> Path:
    """The model repository to start Triton on so that it serves the export `weights`: the
    repository itself when its config names them (or `weights` is None), else a copy of it
    under `work_dir` whose whisper config names them (its other models linked as they are).
    The export must exist."""
    if weights is None or weights == configured_weights(model_repository):
        return model_repository
    if not (model_repository / "whisper" / "1" / "weights" / f"{weights}.json").is_file():
        raise TritonLaunchError(
            f"no export named {weights!r} in {model_repository}/whisper/1/weights "
            f"(make export WEIGHTS={weights}, or python -m export {weights}, writes it)"
        )
    directory = model_repository_with(
        work_dir / f"repository-{weights}", {"weights": weights}, source=model_repository
    )
    for model in model_repository.iterdir():  # the repository's other models, as they are
        link = directory / model.name
        if model.name != "whisper" and (model / "config.pbtxt").is_file() and not link.exists():
            try:
                link.symlink_to(model.resolve(), target_is_directory=True)
            except FileExistsError:  # another launcher made it at the same moment
                pass
    return directory


# Where the Python backend's stubs and the server exchange tensors (POSIX shared memory)
SHARED_MEMORY = Path("/dev/shm")


class LocalTriton:
    """A `tritonserver` child process: `with LocalTriton(...) as triton:` waits for readiness.

    Its Python backend's shared-memory regions carry a name prefix of this launcher's own, and
    `stop` removes what is left of them: a server that crashed or was killed leaves its
    regions in /dev/shm (about 2 MB per model instance), and a supervisor restarting it for
    weeks would fill that filesystem, after which no server starts."""

    def __init__(
        self,
        *,
        model_repository: Path = DEFAULT_MODEL_REPOSITORY,
        ports: TritonPorts = TritonPorts(),
        host: str = "127.0.0.1",
        work_dir: Path = DEFAULT_WORK_DIR,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
        weights: str | None = None,
    ) -> None:
        """`weights`: the export to serve instead of the one the repository's config names
        (None: that one)."""
        self.model_repository = repository_serving(weights, model_repository, work_dir)
        self.weights = weights or configured_weights(model_repository)
        self.ports = ports
        self.host = host
        self.work_dir = work_dir
        self.log_path = log_path
        self.extra_args = extra_args
        self.distribution = TritonDistribution.installed()
        self.process: subprocess.Popen[bytes] | None = None
        self.shared_memory_prefix = f"hermes_triton_{secrets.token_hex(6)}_"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    def command(self) -> list[str]:
        backend_dir = assemble_backend_dir(self.distribution, self.work_dir)
        return [
            str(self.distribution.server),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--cache-directory={self.distribution.caches}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--exit-on-error=true",
            "--strict-readiness=true",
            f"--backend-config=python,shm-region-prefix-name={self.shared_memory_prefix}",
            *restricted_api_args(
                os.environ.get("HERMES_TRITON_ADMIN_KEY") or secrets.token_urlsafe(24)
            ),
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.process is not None:
            raise TritonLaunchError("this tritonserver is already started")
        speaker = self.model_repository / "speaker"
        if (speaker / "config.pbtxt").is_file() and not any(
            (speaker / "1" / "weights").glob("*.json")
        ):  # Triton would exit on the model it cannot load; say which command writes them
            raise TritonLaunchError(
                f"no speaker weights in {speaker}/1/weights (make export, or python -m "
                "export.speaker, writes them)"
            )
        command = self.command()
        logger.info("starting %s", " ".join(command))
        output = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                command,
                env=server_environment(self.distribution),
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                stdin=subprocess.DEVNULL,
                # its own process group, to stop the stubs with it, but not its own session:
                # where the kernel groups each session's processes for CPU time
                # (sched_autogroup), a session of its own would get Triton an equal share
                # with the whole gateway, whose file work niced below it (gateway.modes.priority)
                # would then still take Triton's cores from the live streams' steps
                process_group=0,
            )
        finally:
            if output:
                output.close()

    def is_ready(self, model: str = "whisper") -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.http_url}/v2/models/{model}/ready", timeout=2
            ) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 300.0, model: str = "whisper") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise TritonLaunchError(
                    f"tritonserver exited with code {code} before model {model!r} was ready"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if self.is_ready(model):
                logger.info("model %s ready on %s", model, self.http_url)
                return
            time.sleep(0.5)
        raise TritonLaunchError(f"model {model!r} not ready after {timeout:g} s")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group (server + stubs), SIGKILL what outlives it, and
        remove the shared memory it left."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver did not stop in %g s; killing it", timeout)
            except ProcessLookupError:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # stubs left in the group, if any
        except ProcessLookupError:
            pass
        process.wait()
        for region in SHARED_MEMORY.glob(f"{self.shared_memory_prefix}*"):
            region.unlink(missing_ok=True)

    def __enter__(self) -> LocalTriton:
        self.start()
        try:
            for model in served_models(self.model_repository) or ["whisper"]:
                self.wait_ready(model=model)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default=os.environ.get(WEIGHTS_ENV) or None,
        metavar="NAME",
        help=f"the export to serve, e.g. base (python -m export NAME writes it; env "
        f"{WEIGHTS_ENV}; default: the one config.pbtxt names, tiny.en)",
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.tools.local_triton`: serve the model repository until Ctrl-C or
    SIGTERM."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--host", default=os.environ.get("HERMES_TRITON_HOST", "127.0.0.1"))
    parser.add_argument("--http-port", type=int, default=TritonPorts.http)
    parser.add_argument("--grpc-port", type=int, default=TritonPorts.grpc)
    parser.add_argument("--metrics-port", type=int, default=TritonPorts.metrics)
    add_weights_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        triton = LocalTriton(
            model_repository=args.model_repository,
            host=args.host,
            ports=TritonPorts(args.http_port, args.grpc_port, args.metrics_port),
            weights=args.weights,
        )
    except TritonLaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with triton:
            print(
                f"Triton ready, serving {triton.weights}: HTTP {triton.http_url}, "
                f"gRPC {triton.grpc_url}, "
                f"metrics http://{args.host}:{args.metrics_port}/metrics (Ctrl-C stops)",
                flush=True,
            )
            triton.process.wait()  # type: ignore[union-attr]
            return triton.process.returncode if triton.process else 0  # exited by itself
    except KeyboardInterrupt:
        return 0
    except TritonLaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
