"""The Helm chart, rendered by Helm's own library (helm-python-sdk, no helm binary) with
the default and the CPU values, every object checked against the Kubernetes schemas.

A cluster cannot run here: these tests check what a render can show (objects valid,
probes, GPU requests = limits, secrets only by reference, the NetworkPolicy, the
autoscaler), not that the pods start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from facefuse.gateway.observability import SERVICE_NAME
from facefuse.server.secret_args import secret_placeholder
from facefuse.server.triton import (
    ADMIN_KEY_VARIABLE,
    GATEWAY_APIS,
    GATEWAY_KEY_VARIABLE,
    RESTRICTED_APIS,
    trace_flags,
)
from facefuse.settings import project_root

CHART = project_root() / "helm" / "facefuse"
KUBE_VERSION = "1.33.0"
RELEASE, NAMESPACE = "ff", "facefuse"
# Custom resources of the Prometheus operator and KEDA: kubernetes-validate has no
# schema for them; test_custom_resources_have_the_fields_their_operators_need checks them.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
SECRET_LOOKING = re.compile(r"ffk_|BEGIN [A-Z ]*KEY|eyJ[A-Za-z0-9_-]{10,}")


class _StrictLoader(yaml.SafeLoader):
    """A YAML mapping with a key twice is an error (kubectl refuses it; safe_load keeps the last)."""


def _no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def values_file(name: str) -> dict:
    return helm_python.values_from_yaml((CHART / name).read_text())


def render(values: dict | None = None) -> list[dict]:
    manifests = helm_python.Chart.load(CHART).render(values=values or {}, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects += [o for o in yaml.load_all(text, Loader=_StrictLoader) if o]
    return objects


def merged(*overrides: dict) -> dict:
    def merge(base: dict, extra: dict) -> dict:
        out = dict(base)
        for key, value in extra.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    result: dict = {}
    for override in overrides:
        result = merge(result, override)
    return result


def one(objects: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{len(found)} {kind} objects named *{name_suffix}"
    return found[0]


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


DEFAULT = {}
CPU = values_file("values-cpu.yaml")
WITH_EVERYTHING = {
    "tracing": {"otlpTracesUrl": "http://otel-collector.monitoring:4318/v1/traces"},
    "gateway": {"auth": {"keysSecret": "facefuse-api-keys",
                         "jwt": {"hs256SecretRef": {"name": "facefuse-jwt"}, "rs256PublicKeySecret": "facefuse-jwt-rs256",
                                 "issuer": "https://auth.example.com", "audience": "facefuse"}}},
    "templates": {"existingClaim": "facefuse-templates"},
    "triton": {"modelRepository": {"source": "s3", "url": "s3://models-bucket/facefuse", "credentialsSecret": "s3-creds"}},
}
VALUE_SETS = {
    "default": DEFAULT,
    "cpu": CPU,
    "everything-set": WITH_EVERYTHING,
    "keda": {"autoscaling": {"provider": "keda"}},
    "cpu-keda-volume": merged(CPU, {"autoscaling": {"provider": "keda"},
                                    "triton": {"modelRepository": {"source": "volume", "volume": {"claimName": "models"}}}}),
}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(values):
    objects = render(values)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"} <= kinds
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_helm_lint_finds_no_errors_or_warnings():
    for values in (DEFAULT, CPU):
        report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (problems, report["errors"])


def test_triton_requests_as_many_gpus_as_it_limits_and_none_on_cpu():
    gpu = container(one(render(DEFAULT), "Deployment", "-triton"))["resources"]
    assert gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"] == 1
    two = container(one(render({"triton": {"gpus": 2}}), "Deployment", "-triton"))["resources"]
    assert two["requests"]["nvidia.com/gpu"] == two["limits"]["nvidia.com/gpu"] == 2
    cpu = container(one(render(CPU), "Deployment", "-triton"))["resources"]
    assert "nvidia.com/gpu" not in cpu["requests"] and "nvidia.com/gpu" not in cpu["limits"]
    assert one(render(CPU), "Deployment", "-triton")["spec"]["template"]["spec"].get("tolerations") is None


def test_triton_probes_its_health_endpoints_and_waits_for_model_loading():
    triton = container(one(render(DEFAULT), "Deployment", "-triton"))
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = triton["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # a cold GPU node loading models


def test_triton_gets_dev_shm_as_memory_and_explicit_model_control_with_the_admin_key_from_a_secret():
    deployment = one(render(DEFAULT), "Deployment", "-triton")
    pod = deployment["spec"]["template"]["spec"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container(deployment)["volumeMounts"]
    args = container(deployment)["args"]
    assert "--model-control-mode=explicit" in args
    admin_groups = ",".join(RESTRICTED_APIS)
    placeholder = secret_placeholder(ADMIN_KEY_VARIABLE)
    assert f"--grpc-restricted-protocol={admin_groups}:admin-key={placeholder}" in args
    assert f"--http-restricted-api={admin_groups}:admin-key={placeholder}" in args
    env = env_of(deployment)
    assert env[ADMIN_KEY_VARIABLE]["valueFrom"]["secretKeyRef"] == {"name": "ff-facefuse-triton-admin", "key": "admin-key"}
    # The library that turns the placeholders into the keys, at the path the image builds it to.
    assert env["LD_PRELOAD"]["value"] == "/opt/facefuse/lib/libfacefuse_secret_args.so"
    assert "/opt/facefuse/lib/libfacefuse_secret_args.so" in (project_root() / "docker" / "triton.Dockerfile").read_text()
    objects = render({"triton": {"adminKey": {"existingSecret": "ops-triton-admin"}}})
    assert env_of(one(objects, "Deployment", "-triton"))[ADMIN_KEY_VARIABLE]["valueFrom"]["secretKeyRef"]["name"] \
        == "ops-triton-admin"


def test_the_rendered_chart_holds_no_key_and_names_no_secret_value_on_a_command_line():
    for values in (DEFAULT, CPU):
        objects = render(values)
        assert not [o for o in objects if o["kind"] == "Secret"]  # keys live in a Secret the operator made
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            for c in deployment["spec"]["template"]["spec"]["containers"]:
                words = " ".join([*c.get("command", []), *c.get("args", [])])
                # Kubernetes expands $(VAR) into the arguments, which /proc/PID/cmdline shows.
                assert "$(" not in words, (deployment["metadata"]["name"], words)
                for entry in c.get("env", []):
                    if re.search(r"(KEY|SECRET|TOKEN|PASSWORD)$", entry["name"]):
                        assert "value" not in entry, entry  # only by reference


def test_only_the_gateway_holds_the_key_that_opens_tritons_inference_api():
    objects = render(DEFAULT)
    triton, gateway = one(objects, "Deployment", "-triton"), one(objects, "Deployment", "-gateway")
    groups = ",".join(GATEWAY_APIS)
    args = container(triton)["args"]
    placeholder = secret_placeholder(GATEWAY_KEY_VARIABLE)
    assert f"--grpc-restricted-protocol={groups}:gateway-key={placeholder}" in args
    assert f"--http-restricted-api={groups}:gateway-key={placeholder}" in args
    same_entry = {"name": "ff-facefuse-triton-admin", "key": "gateway-key"}
    assert env_of(triton)[GATEWAY_KEY_VARIABLE]["valueFrom"]["secretKeyRef"] == same_entry
    assert env_of(gateway)["FACEFUSE_TRITON_GATEWAY_KEY"]["valueFrom"]["secretKeyRef"] == same_entry
    # The gateway never gets the admin key (a compromised gateway cannot load models).
    assert not [v for v in env_of(gateway).values() if "admin-key" in json.dumps(v)]
    # An operator's Secret is read for both.
    objects = render({"triton": {"adminKey": {"existingSecret": "ops-triton-keys"}}})
    assert env_of(one(objects, "Deployment", "-gateway"))["FACEFUSE_TRITON_GATEWAY_KEY"]["valueFrom"]["secretKeyRef"] \
        == {"name": "ops-triton-keys", "key": "gateway-key"}


def test_triton_reads_the_model_repository_from_the_image_a_volume_or_object_storage():
    def roots(values):
        args = container(one(render(values), "Deployment", "-triton"))["args"]
        return [a.split("=", 1)[1] for a in args if a.startswith("--model-repository=")]

    assert roots(DEFAULT) == ["/opt/facefuse/repository/model_repository", "/opt/facefuse/repository/ensembles"]
    assert roots(WITH_EVERYTHING) == ["s3://models-bucket/facefuse/model_repository", "s3://models-bucket/facefuse/ensembles"]
    s3 = one(render(WITH_EVERYTHING), "Deployment", "-triton")
    assert container(s3)["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    volume = one(render({"triton": {"modelRepository": {"source": "volume", "volume": {"claimName": "models"}}}}),
                 "Deployment", "-triton")
    claims = [v["persistentVolumeClaim"]["claimName"] for v in volume["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["models"]
    with pytest.raises(helm_python.HelmError, match="image, volume, s3 or gcs"):
        render({"triton": {"modelRepository": {"source": "ftp"}}})


def test_triton_trace_flags_are_the_ones_the_embedded_server_uses():
    url = WITH_EVERYTHING["tracing"]["otlpTracesUrl"]
    args = container(one(render(WITH_EVERYTHING), "Deployment", "-triton"))["args"]
    flags = trace_flags(url)
    start = args.index(flags[0])
    assert args[start:start + len(flags)] == flags
    assert "--trace-config" not in container(one(render(DEFAULT), "Deployment", "-triton"))["args"]


def test_no_secret_material_is_in_the_values_files_or_the_rendered_pods():
    for name in ("values.yaml", "values-cpu.yaml"):
        assert not SECRET_LOOKING.search((CHART / name).read_text()), name
    objects = render(WITH_EVERYTHING)
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        for var in env_of(deployment).values():
            if re.search(r"SECRET|KEY$|PASSWORD|TOKEN", var["name"]) and not var["name"].endswith("_FILE"):
                assert "value" not in var and "secretKeyRef" in var["valueFrom"], var
    gateway = one(objects, "Deployment", "-gateway")
    assert env_of(gateway)["FACEFUSE_GATEWAY_JWT_HS256_SECRET"]["valueFrom"]["secretKeyRef"] == \
        {"name": "facefuse-jwt", "key": "hs256-secret"}
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "facefuse-api-keys"
    assert volumes["jwt-public-key"]["secret"]["secretName"] == "facefuse-jwt-rs256"


def test_gateway_lists_the_triton_pods_through_the_headless_service_and_probes_grpc_health():
    objects = render(DEFAULT)
    gateway = one(objects, "Deployment", "-gateway")
    headless = one(objects, "Service", "-triton-pods")
    assert headless["spec"]["clusterIP"] == "None"
    urls = json.loads(env_of(gateway)["FACEFUSE_GATEWAY_TRITON_URLS"]["value"])
    assert urls == [f"dns:///{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local:8001"]
    probes = container(gateway)
    assert probes["readinessProbe"]["grpc"] == {"port": 50051, "service": SERVICE_NAME}
    assert probes["livenessProbe"]["grpc"]["port"] == 50051
    assert one(objects, "PodDisruptionBudget", "-gateway")["spec"]["minAvailable"] >= 1
    assert gateway["spec"]["replicas"] == 3


def test_network_policy_lets_only_the_gateway_reach_tritons_serving_ports():
    objects = render(DEFAULT)
    policy = one(objects, "NetworkPolicy")
    triton_labels = one(objects, "Deployment", "-triton")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = one(objects, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == triton_labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    serving = [rule for rule in policy["spec"]["ingress"] if {p["port"] for p in rule["ports"]} & {8000, 8001}]
    assert len(serving) == 1
    assert serving[0]["from"] == [{"podSelector": {"matchLabels": gateway_labels}}]
    others = [rule for rule in policy["spec"]["ingress"] if rule is not serving[0]]
    assert all({p["port"] for p in rule["ports"]} == {8002} for rule in others)


def test_autoscaling_targets_queue_time_per_request_with_fast_scale_up_and_slow_scale_down():
    hpa = one(render(DEFAULT), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"].endswith("-triton")
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "facefuse_triton_queue_us_per_request"
    rule = one(render(DEFAULT), "PrometheusRule")["spec"]["groups"][0]["rules"][0]
    assert rule["record"] == metric["metric"]["name"]
    assert "nv_inference_queue_duration_us" in rule["expr"] and "nv_inference_request_success" in rule["expr"]
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # The HPA owns the replica count: the Deployment must not fight it.
    assert "replicas" not in one(render(DEFAULT), "Deployment", "-triton")["spec"]
    assert one(render({"autoscaling": {"enabled": False}}), "Deployment", "-triton")["spec"]["replicas"] == 2


def test_keda_switch_renders_a_scaled_object_instead_of_an_hpa():
    objects = render({"autoscaling": {"provider": "keda"}})
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    scaled = one(objects, "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
    assert "nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]
    with pytest.raises(helm_python.HelmError, match="prometheus-adapter or keda"):
        render({"autoscaling": {"provider": "cron"}})


def test_custom_resources_have_the_fields_their_operators_need():
    objects = render(merged(DEFAULT, {"autoscaling": {"provider": "keda"}}))
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"].rsplit("-", 1)[-1] for m in monitors} == {"triton", "gateway"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selected = [s for s in services.values() if monitor["spec"]["selector"]["matchLabels"].items()
                    <= s["metadata"]["labels"].items()]
        assert any(p["name"] == "metrics" for s in selected for p in s["spec"]["ports"]), monitor["metadata"]["name"]
    scaled = one(objects, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment", "-triton")["metadata"]["name"]


def test_grafana_dashboard_plots_what_an_sre_needs_from_series_that_exist():
    dashboard = json.loads(one(render(DEFAULT), "ConfigMap", "-dashboard")["data"]["facefuse.json"])
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in ("Calls/s by reason", "Latency p50 / p99 by RPC", "Queue time per stage request",
                   "Compute time per stage request", "GPU utilisation", "Shed and rate-limited calls",
                   "Hedges and retries", "Replicas"):
        assert needed in titles
    from facefuse.gateway.observability import GatewayMetrics

    class NoReplicas:
        replicas, hedges_sent, hedges_won, failovers, failovers_won = [], 0, 0, 0, 0

    gateway_series = set()
    for family in GatewayMetrics(NoReplicas()).registry.collect():
        gateway_series |= {s.name for s in family.samples} | {family.name + suffix for suffix in ("", "_total", "_bucket")}
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = set(re.findall(r"facefuse_gateway_\w+", exprs))
    assert used and used <= gateway_series, used - gateway_series
