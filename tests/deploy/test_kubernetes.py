"""deploy/k8s: the base and both overlays rendered by kustomize, every manifest validated against
the Kubernetes API schema (strict: unknown fields refused), and what deploy/README.md says."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from gateway.backend.endpoints import Endpoint
from gateway.server.app import PUBLIC_RESOURCES
from gateway.server.metrics import GatewayMetrics
from gateway.server.settings import Settings
from gateway.server.uploads import MULTIPART_OVERHEAD_BYTES
from testsupport.deploy import (
    K8S_DIR,
    OVERLAYS,
    container,
    find,
    gateway_settings,
    validate_manifest,
)

KUSTOMIZATIONS = ("base", *OVERLAYS)
WEIGHTS_DIR = "/opt/hermes/model_repository/whisper/1/weights"
INGRESS_NGINX = "nginx.ingress.kubernetes.io/"


def pod_spec(documents: list[dict], deployment: str) -> dict:
    return find(documents, "Deployment", deployment)["spec"]["template"]["spec"]


def pod_labels(documents: list[dict], deployment: str) -> dict:
    return find(documents, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def config_map(documents: list[dict], name: str) -> dict:
    (match,) = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(f"{name}-")
    ]
    return match["data"]


def nginx_size_bytes(value: str) -> int:
    """An nginx size: a number and k, m or g (powers of 1024)."""
    return int(value[:-1]) * 1024 ** ("kmg".index(value[-1].lower()) + 1)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_manifest_is_valid_for_the_target_kubernetes(rendered, kustomization):
    errors = []
    for document in rendered[kustomization]:
        try:
            validate_manifest(document)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {exc.message}")
    assert not errors
    assert {d["kind"] for d in rendered[kustomization]} == {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
    }


@pytest.mark.parametrize(
    "mistake",
    [
        lambda pod: pod["containers"][0].update(readinessprobe={}),  # misspelt: an unknown field
        lambda pod: pod["containers"][0]["ports"][0].update(containerPort="http"),  # wrong type
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_validation_refuses_a_broken_manifest(rendered, mistake):
    deployment = copy.deepcopy(find(rendered["base"], "Deployment", "gateway"))
    mistake(deployment["spec"]["template"]["spec"])
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(deployment)


def test_every_resource_lands_in_the_hermes_namespace(rendered):
    for document in rendered["gpu"]:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "hermes", document["metadata"]["name"]


def test_gpu_overlay_gives_each_triton_pod_one_gpu(rendered):
    spec = pod_spec(rendered["gpu"], "triton")
    assert container(spec, "triton")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert config_map(rendered["gpu"], "triton-model")["HERMES_DEVICE"] == "cuda"
    gateway = container(pod_spec(rendered["gpu"], "gateway"), "gateway")
    assert "nvidia.com/gpu" not in yaml.safe_dump(gateway)


@pytest.mark.parametrize("kustomization", ["base", "cpu"])
def test_without_the_gpu_overlay_nothing_asks_for_a_gpu(rendered, kustomization):
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(rendered[kustomization])


def test_cpu_overlay_keeps_triton_on_the_cpu(rendered):
    settings = config_map(rendered["cpu"], "triton-model")
    assert settings["HERMES_DEVICE"] == "cpu"
    requested = container(pod_spec(rendered["cpu"], "triton"), "triton")["resources"]["requests"]
    assert settings["OMP_NUM_THREADS"] == requested["cpu"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_triton_probes_use_its_health_endpoints(rendered, kustomization):
    triton = container(pod_spec(rendered[kustomization], "triton"), "triton")
    ports = {port["name"]: port["containerPort"] for port in triton["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    probes = {
        kind: triton[kind]["httpGet"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes == {
        "startupProbe": {"path": "/v2/health/ready", "port": "http"},
        "readinessProbe": {"path": "/v2/health/ready", "port": "http"},
        "livenessProbe": {"path": "/v2/health/live", "port": "http"},
    }
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # time to load


def test_an_init_container_exports_the_weights_triton_reads(rendered):
    spec = pod_spec(rendered["gpu"], "triton")
    export = container(spec, "export", init=True)
    triton = container(spec, "triton")
    assert export["image"] == triton["image"]
    assert export["command"] == ["python3", "-m", "export"]
    assert export["args"] == ["$(HERMES_MODEL)", "--from", "$(HERMES_EXPORT_FROM)"]
    assert export["envFrom"] == triton["envFrom"]  # one HERMES_MODEL for both
    assert export["volumeMounts"] == [{"name": "weights", "mountPath": WEIGHTS_DIR}]
    assert {"name": "weights", "mountPath": WEIGHTS_DIR, "readOnly": True} in triton["volumeMounts"]
    (weights,) = [v for v in spec["volumes"] if v["name"] == "weights"]
    assert "emptyDir" in weights
    assert config_map(rendered["gpu"], "triton-model")["HERMES_MODEL"] == "tiny.en"


def test_triton_pods_are_scraped_on_the_metrics_port(rendered):
    deployment = find(rendered["gpu"], "Deployment", "triton")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8002",
        "prometheus.io/path": "/metrics",
    }


def test_triton_service_is_headless_over_the_triton_pods(rendered):
    service = find(rendered["gpu"], "Service", "triton")["spec"]
    assert service["clusterIP"] == "None"
    assert selects(service["selector"], pod_labels(rendered["gpu"], "triton"))
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["ports"]}
    assert ports == {"grpc": (8001, "grpc"), "http": (8000, "http"), "metrics": (8002, "metrics")}


def test_gateway_points_at_the_headless_service(rendered, tmp_path):
    gateway = container(pod_spec(rendered["gpu"], "gateway"), "gateway")
    env = {variable["name"]: variable["value"] for variable in gateway["env"]}
    (tmp_path / "api-keys").write_text("hk-a-key-from-the-secret\n")  # the mounted Secret
    env["HERMES_API_KEYS_FILE"] = str(tmp_path / "api-keys")
    service = find(rendered["gpu"], "Service", "triton")
    grpc = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    configured = gateway_settings(env)
    # The short name resolves in the gateway's namespace, which is the Service's.
    assert configured.triton_endpoints == (Endpoint(service["metadata"]["name"], grpc),)
    # New replicas are found sooner than by default.
    assert configured.triton_resolve_interval_s < Settings().triton_resolve_interval_s


def test_the_gateways_memory_limit_holds_its_worst_case(rendered, tmp_path):
    """The pod's memory limit is above the most the gateway's settings let clients make it
    hold (Settings.worst_case_memory_mb)."""
    gateway = container(pod_spec(rendered["gpu"], "gateway"), "gateway")
    env = {variable["name"]: variable["value"] for variable in gateway["env"]}
    (tmp_path / "api-keys").write_text("hk-a-key-from-the-secret\n")  # the mounted Secret
    env["HERMES_API_KEYS_FILE"] = str(tmp_path / "api-keys")
    worst_mib = gateway_settings(env).worst_case_memory_mb
    memory = gateway["resources"]["limits"]["memory"]
    assert memory.endswith("Gi") and worst_mib < int(memory.removesuffix("Gi")) * 1024


def test_only_the_gateway_reaches_triton_on_grpc_and_monitoring_its_metrics(rendered):
    policy = find(rendered["gpu"], "NetworkPolicy", "triton")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels(rendered["gpu"], "triton"))
    inference, metrics = policy["ingress"]
    (source,) = inference["from"]
    assert selects(source["podSelector"]["matchLabels"], pod_labels(rendered["gpu"], "gateway"))
    assert inference["ports"] == [{"port": "grpc"}]  # no HTTP: model control, shared memory
    (scraper,) = metrics["from"]
    assert scraper == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert metrics["ports"] == [{"port": "metrics"}]


def test_the_gateway_asks_for_keys_from_a_secret_and_the_ingress_names_a_host(rendered):
    spec = pod_spec(rendered["gpu"], "gateway")
    gateway = container(spec, "gateway")
    env = {item["name"]: item["value"] for item in gateway["env"]}
    assert env["HERMES_API_KEYS_FILE"] == "/run/secrets/hermes/api-keys"
    mount = {"name": "api-keys", "mountPath": "/run/secrets/hermes", "readOnly": True}
    assert mount in gateway["volumeMounts"]
    (keys,) = [volume for volume in spec["volumes"] if volume["name"] == "api-keys"]
    assert keys["secret"]["secretName"] == "hermes-api-keys"
    assert keys["secret"]["items"] == [{"key": "api-keys", "path": "api-keys"}]
    assert "optional" not in keys["secret"]  # no keys, no gateway: never open by accident
    ingress = find(rendered["gpu"], "Ingress", "gateway")["spec"]
    assert [rule["host"] for rule in ingress["rules"]] == ["speech.example.com"]


def test_gateway_probes(rendered):
    gateway = container(pod_spec(rendered["gpu"], "gateway"), "gateway")
    assert gateway["ports"] == [{"name": "http", "containerPort": 8080}]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_gateway_runs_restricted(rendered):
    spec = pod_spec(rendered["gpu"], "gateway")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    gateway = container(spec, "gateway")
    assert gateway["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # A writable /tmp for the uploads ffmpeg reads (Python's tempfile), nothing else.
    writable = [mount for mount in gateway["volumeMounts"] if not mount.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    (tmp,) = [volume for volume in spec["volumes"] if "emptyDir" in volume]
    assert tmp["name"] == "tmp"
    assert {"requests", "limits"} <= set(gateway["resources"])


def test_triton_runs_unprivileged(rendered):
    spec = pod_spec(rendered["gpu"], "triton")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 1000
    for name, init in (("export", True), ("triton", False)):
        context = container(spec, name, init=init)["securityContext"]
        assert context == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_replica_counts_belong_to_the_autoscalers(rendered):
    for deployment in ("gateway", "triton"):
        # A replicas field would be reset by every apply, undoing the HPA's scaling.
        assert "replicas" not in find(rendered["gpu"], "Deployment", deployment)["spec"]
    gateway = find(rendered["gpu"], "HorizontalPodAutoscaler", "gateway")["spec"]
    assert gateway["minReplicas"] >= 2 and gateway["maxReplicas"] > gateway["minReplicas"]


def adapter_rule(metric: str) -> dict:
    """prometheus-adapter's rule that serves the Pods metric of that name."""
    adapter = yaml.safe_load((K8S_DIR / "prometheus-adapter-values.yaml").read_text())
    (rule,) = [rule for rule in adapter["rules"]["custom"] if rule["name"]["as"] == metric]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    return rule


def test_gateway_scales_on_cpu_and_on_its_event_loops_lag(rendered):
    hpa = find(rendered["gpu"], "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    cpu, lag = hpa["metrics"]
    assert cpu == {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 70},
        },
    }
    requests = container(pod_spec(rendered["gpu"], "gateway"), "gateway")["resources"]["requests"]
    assert "cpu" in requests  # utilisation is measured against the request

    assert lag["type"] == "Pods"
    assert lag["pods"]["target"] == {"type": "AverageValue", "averageValue": "50m"}
    rule = adapter_rule(lag["pods"]["metric"]["name"])
    # the gateway's own histogram, as gateway/server/metrics.py names it
    for series in ("hermes_event_loop_lag_seconds_sum", "hermes_event_loop_lag_seconds_count"):
        assert f"rate({series}{{<<.LabelMatchers>>}}[1m])" in rule["metricsQuery"]
    assert GatewayMetrics().registry.get_sample_value("hermes_event_loop_lag_seconds_count") == 0


def test_triton_scales_on_the_queue_time_prometheus_adapter_serves(rendered):
    hpa = find(rendered["gpu"], "HorizontalPodAutoscaler", "triton")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "triton",
    }
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"]["type"] == "AverageValue"

    rule = adapter_rule(metric["pods"]["metric"]["name"])
    for series in ("nv_inference_queue_duration_us", "nv_inference_request_success"):
        assert f'rate({series}{{<<.LabelMatchers>>,model="whisper"}}[1m])' in rule["metricsQuery"]


def test_gateway_disruption_budget_covers_the_gateway_pods(rendered):
    pdb = find(rendered["gpu"], "PodDisruptionBudget", "gateway")["spec"]
    assert selects(pdb["selector"]["matchLabels"], pod_labels(rendered["gpu"], "gateway"))
    hpa = find(rendered["gpu"], "HorizontalPodAutoscaler", "gateway")["spec"]
    assert 1 <= pdb["minAvailable"] < hpa["minReplicas"]  # a node can still be drained


def test_gateway_service_and_ingress(rendered):
    service = find(rendered["gpu"], "Service", "gateway")["spec"]
    assert selects(service["selector"], pod_labels(rendered["gpu"], "gateway"))
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]

    ingress = find(rendered["gpu"], "Ingress", "gateway")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "gateway", "port": {"name": "http"}}
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[INGRESS_NGINX + timeout]) >= 3600  # WebSocket streams
    # Larger than the gateway's own limit, so that the gateway answers 413 in JSON, not nginx.
    body_limit = nginx_size_bytes(annotations[INGRESS_NGINX + "proxy-body-size"])
    largest_upload = Settings().max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    assert largest_upload <= body_limit <= largest_upload + 2 * 1024**2


def test_images_are_tagged(rendered):
    images = {
        c["image"]
        for d in rendered["gpu"]
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"].get("initContainers", [])
        + d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"hermes-gateway:0.1.0", "hermes-triton:0.1.0"}


def test_only_the_ingress_controller_and_monitoring_reach_the_gateway(rendered):
    policy = find(rendered["gpu"], "NetworkPolicy", "gateway")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels(rendered["gpu"], "gateway"))
    assert policy["policyTypes"] == ["Ingress"]
    sources = {}
    for rule in policy["ingress"]:
        (source,) = rule["from"]
        assert set(source) == {"namespaceSelector"}  # whole namespaces, named
        sources[source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]] = rule[
            "ports"
        ]
    # the API's port, where GET /metrics is too (behind the same keys)
    assert sources == {"ingress-nginx": [{"port": "http"}], "monitoring": [{"port": "http"}]}
    gateway = container(pod_spec(rendered["gpu"], "gateway"), "gateway")
    assert [port["name"] for port in gateway["ports"]] == ["http"]


def test_prometheus_scrapes_the_gateway_with_the_metrics_key_of_the_secret(rendered):
    """/metrics asks for an API key like the API: the PodMonitor and the plain scrape job
    present `metrics-key` of hermes-api-keys, which the README puts in `api-keys` too."""
    spec = pod_spec(rendered["gpu"], "gateway")
    (keys,) = [volume for volume in spec["volumes"] if volume["name"] == "api-keys"]
    assert "/metrics" not in PUBLIC_RESOURCES

    monitor = yaml.safe_load((K8S_DIR / "gateway-podmonitor.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["metadata"]["namespace"] == "hermes"  # where the Secret is
    assert selects(
        monitor["spec"]["selector"]["matchLabels"], pod_labels(rendered["gpu"], "gateway")
    )
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    secret = keys["secret"]["secretName"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": secret, "key": "metrics-key"},
    }

    (job,) = yaml.safe_load((K8S_DIR / "gateway-scrape-config.yaml").read_text())["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"].endswith("/metrics-key")
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["hermes"]}}]
    kept = {
        rule["source_labels"][0]: rule["regex"]
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    }
    assert kept == {
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "gateway",
        "__meta_kubernetes_pod_container_port_name": "http",
    }

    readme = (K8S_DIR.parent / "README.md").read_text()
    assert f"create secret generic {secret} --from-file=api-keys=./api-keys" in readme
    assert '--from-literal=metrics-key="$metrics_key"' in readme
