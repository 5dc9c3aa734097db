"""`hermes up`: the whole service on one machine, a local Triton and the gateway before it.

Triton starts first (the gateway's `/readyz` would say 503 until the model is loaded
anyway) and is restarted with backoff if it dies (`gateway.tools.supervisor`); Ctrl-C or SIGTERM
stops the gateway gracefully, then Triton and its stub.
"""

from __future__ import annotations

import argparse
import sys

from gateway.backend.endpoints import parse_endpoints
from gateway.server.app import serve, startup
from gateway.tools.local_triton import (
    LocalTriton,
    TritonLaunchError,
    TritonPorts,
    add_weights_argument,
)
from gateway.tools.supervisor import TritonSupervisor


def triton_ports(grpc_url: str) -> TritonPorts:
    """Triton's default ports, with gRPC where the gateway is told to find it (the first
    endpoint: one machine runs one local Triton)."""
    return TritonPorts(grpc=parse_endpoints(grpc_url)[0].port)


def main(argv: list[str] | None = None) -> int:
    """`hermes up [--weights NAME] [gateway flags]`: `--weights` picks the export Triton
    serves; every other flag is the gateway's (as `hermes serve` takes them)."""
    parser = argparse.ArgumentParser(prog="hermes up", add_help=False, allow_abbrev=False)
    add_weights_argument(parser)
    args = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(args):
        print(parser.format_help())  # then the gateway's flags, as `hermes serve` lists them
    own, gateway_args = parser.parse_known_args(args)
    if (settings := startup(gateway_args)) is None:
        return 2
    try:
        triton = LocalTriton(ports=triton_ports(settings.triton_url), weights=own.weights)
        with triton:
            print(
                f"hermes: gateway http://{settings.host}:{settings.port}  "
                f"(Triton serving {triton.weights}: HTTP {triton.http_url}, "
                f"gRPC {triton.grpc_url}); Ctrl-C stops",
                flush=True,
            )
            supervisor = TritonSupervisor(triton)
            supervisor.start()
            try:
                serve(settings)
            finally:
                supervisor.stop()
    except TritonLaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
