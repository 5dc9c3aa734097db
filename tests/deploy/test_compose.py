"""docker-compose.yml (+ docker-compose.override.yml on a GPU host), as `docker-compose config`
resolves them: what deploy/README.md says the services are."""

from __future__ import annotations

import pytest

from testsupport.deploy import (
    COMPOSE_VARIANTS,
    ROOT,
    compose_config,
    gateway_settings,
    run_compose_config,
)

WEIGHTS_DIR = "/opt/hermes/model_repository/whisper/1/weights"
GPU_RESERVATION = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}


def service(config: dict, name: str) -> dict:
    return config["services"][name]


def published(config: dict, name: str) -> set[str]:
    """Published ports as docker-compose 1.29 prints them: ADDRESS:HOST_PORT:PORT/tcp."""
    return set(service(config, name).get("ports", []))


@pytest.mark.parametrize("variant", COMPOSE_VARIANTS)
def test_each_variant_has_the_three_services(compose_variants, variant):
    assert set(compose_variants[variant]["services"]) == {"export", "triton", "gateway"}


def test_plain_compose_reads_the_gpu_variant(compose_variants):
    """What `docker compose up` in the repository reads, with no file named."""
    result = run_compose_config()
    assert result.returncode == 0, result.stderr
    assert service(compose_config(), "triton") == service(compose_variants["gpu"], "triton")


def test_gpu_variant_reserves_one_nvidia_gpu_for_triton_only(compose_variants):
    config = compose_variants["gpu"]
    devices = service(config, "triton")["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [GPU_RESERVATION]
    assert service(config, "triton")["environment"]["HERMES_DEVICE"] == "cuda"
    assert "deploy" not in service(config, "export")
    assert "deploy" not in service(config, "gateway")


def test_cpu_variant_reserves_no_gpu(compose_variants):
    config = compose_variants["cpu"]
    assert all("deploy" not in svc for svc in config["services"].values())
    assert service(config, "triton")["environment"]["HERMES_DEVICE"] == "auto"


@pytest.mark.parametrize("variant", COMPOSE_VARIANTS)
def test_startup_order_is_export_then_healthy_triton_then_gateway(compose_variants, variant):
    config = compose_variants[variant]
    assert service(config, "triton")["depends_on"] == {
        "export": {"condition": "service_completed_successfully"}
    }
    assert service(config, "gateway")["depends_on"] == {"triton": {"condition": "service_healthy"}}
    assert "depends_on" not in service(config, "export")


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("triton", "http://127.0.0.1:8000/v2/health/ready"),
        ("gateway", "http://127.0.0.1:8080/readyz"),
    ],
)
def test_healthchecks_ask_for_readiness(compose_variants, name, url):
    healthcheck = service(compose_variants["gpu"], name)["healthcheck"]
    assert healthcheck["test"][0] == "CMD"  # exec form: no shell needed in the image
    assert healthcheck["test"][1] in ("python", "python3")
    assert f"urlopen('{url}'" in healthcheck["test"][-1]
    assert {"interval", "timeout", "retries", "start_period"} <= set(healthcheck)


def test_ports_are_published_on_loopback_by_default(compose_variants):
    config = compose_variants["gpu"]
    assert published(config, "triton") == {
        "127.0.0.1:8000:8000/tcp",  # HTTP
        "127.0.0.1:8001:8001/tcp",  # gRPC
        "127.0.0.1:8002:8002/tcp",  # metrics
    }
    assert published(config, "gateway") == {"127.0.0.1:8080:8080/tcp"}
    assert not service(config, "export").get("ports")


def test_publishing_the_gateway_leaves_triton_on_loopback():
    """Triton authenticates nobody: exposing the gateway must not expose it too."""
    config = compose_config(*COMPOSE_VARIANTS["gpu"], env={"HERMES_PUBLISH_ADDRESS": "0.0.0.0"})
    assert {port.split(":")[0] for port in published(config, "gateway")} == {"0.0.0.0"}
    assert {port.split(":")[0] for port in published(config, "triton")} == {"127.0.0.1"}
    opted_in = compose_config(
        *COMPOSE_VARIANTS["gpu"], env={"HERMES_TRITON_PUBLISH_ADDRESS": "10.0.0.5"}
    )
    assert {port.split(":")[0] for port in published(opted_in, "triton")} == {"10.0.0.5"}


def test_the_weights_volume_is_written_by_export_and_read_by_triton(compose_variants):
    config = compose_variants["gpu"]
    assert "weights" in config["volumes"]
    assert service(config, "export")["volumes"] == [f"weights:{WEIGHTS_DIR}:rw"]
    assert service(config, "triton")["volumes"] == [f"weights:{WEIGHTS_DIR}:ro"]
    assert "volumes" not in service(config, "gateway")


def test_the_model_is_chosen_by_one_variable():
    default = compose_config(*COMPOSE_VARIANTS["gpu"])
    assert service(default, "export")["command"] == ["tiny.en", "--from", "auto"]
    chosen = compose_config(*COMPOSE_VARIANTS["gpu"], env={"HERMES_MODEL": "base"})
    assert service(chosen, "export")["entrypoint"] == ["python3", "-m", "export"]
    assert service(chosen, "export")["command"] == ["base", "--from", "auto"]
    assert service(chosen, "triton")["environment"]["HERMES_MODEL"] == "base"


def test_restart_policies(compose_variants):
    config = compose_variants["gpu"]
    assert service(config, "export")["restart"] == "no"  # one-shot
    assert service(config, "triton")["restart"] == "unless-stopped"
    assert service(config, "gateway")["restart"] == "unless-stopped"


def test_images_export_runs_the_triton_image_and_the_gateway_its_own(compose_variants):
    config = compose_variants["gpu"]
    export, triton, gateway = (service(config, n) for n in ("export", "triton", "gateway"))
    assert export["image"] == triton["image"]
    assert triton["build"] == {"context": str(ROOT), "dockerfile": "deploy/triton/Dockerfile"}
    assert gateway["build"] == {"context": str(ROOT)}  # the top-level Dockerfile
    assert gateway_settings(gateway["environment"]).triton_url == "triton:8001"


def test_gateway_runs_read_only_without_privileges(compose_variants):
    gateway = service(compose_variants["gpu"], "gateway")
    assert gateway["read_only"] is True
    assert gateway["tmpfs"] == ["/tmp:size=512m"]  # 4 uploads of 100 MB at once
    assert gateway["stop_grace_period"] == "45s"  # beyond the 30 s drain of shutdown_timeout_s
    assert gateway["cap_drop"] == ["ALL"]
    assert gateway["security_opt"] == ["no-new-privileges:true"]


def test_the_gateways_memory_limit_holds_its_worst_case(compose_variants):
    """The memory limit is above the most the gateway's settings let clients make it hold:
    with less, four over-long uploads would get it killed, with every live stream on it."""
    gateway = service(compose_variants["gpu"], "gateway")
    worst_mib = gateway_settings(gateway["environment"]).worst_case_memory_mb
    assert gateway["mem_limit"] == "4g" and worst_mib < 4 * 1024


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_triton_outweighs_the_gateway_for_cpu(compose_variants, variant):
    """The live streams' steps run in Triton, uploads' decoding in the gateway: when both
    want the same cores, Triton's container weighs four times as much."""
    triton = service(compose_variants[variant], "triton")
    gateway = service(compose_variants[variant], "gateway")
    assert triton["cpu_shares"] == 4 * gateway.get("cpu_shares", 1024)


@pytest.mark.parametrize(
    ("original", "misspelt"),
    [("    healthcheck:", "    healtcheck:"), ("    restart: unless", "    restarts: unless")],
)
def test_config_rejects_a_key_compose_does_not_know(tmp_path, original, misspelt):
    source = (ROOT / "docker-compose.yml").read_text()
    assert original in source
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(source.replace(original, misspelt, 1))
    result = run_compose_config(broken)
    assert result.returncode != 0
    assert "Unsupported config option" in result.stderr
