"""deploy/kubernetes read as a cluster would take it: the Kustomize base and production overlay
rendered by `kubectl kustomize`, every built-in manifest checked against the Kubernetes schemas
(kubernetes-validate, strict) and the Gateway API ones against the Gateway API's own (v1.2.1,
tests/schemas), then what a schema cannot see: engines that roll out without a surge and are not
killed for being busy, storage any cloud's default class binds, engines only the gateway pods
can reach (NetworkPolicy, key guard), HTTPS through the Gateway API with cert-manager, and the
gateway's image limits equal to the engines'."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.deploy import DEPLOY, flag_value, pixel_cap, profile_flags, render, without
from tram.config import parse_config
from tram.kinds.guard import GUARD_DIR, GUARD_MIDDLEWARE, KEY_VARIABLE

KUBERNETES = "1.32.0"  # the oldest Kubernetes the manifests promise to work on
SCHEMAS = Path(__file__).parent / "schemas" / "gateway-api-v1.2.1"
ENV = {"TRAM_DATABASE_URL": "postgresql://tram:x@postgres/tram", "TRAM_REDIS_URL": "redis://r:6379/0",
       "VLLM_API_KEY": "sk-engine"}
ENGINES = {"vllm-qwen-text": "qwen-text", "vllm-qwen-vl": "qwen-vl"}
Docs = dict[tuple[str, str], dict[str, Any]]


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field validation
    (kubectl's default) does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    return [_strict(v) for v in schema] if isinstance(schema, list) else schema


GATEWAY_API = {kind: jsonschema.Draft7Validator(_strict(json.loads(
    (SCHEMAS / f"{kind.lower()}.json").read_text()))) for kind in ("Gateway", "HTTPRoute")}


def _validate(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("gateway.networking.k8s.io/"):
        assert doc["apiVersion"] == "gateway.networking.k8s.io/v1", doc["apiVersion"]
        errors = [f"{list(e.absolute_path)}: {e.message}"
                  for e in GATEWAY_API[doc["kind"]].iter_errors(doc)]
        assert not errors, (doc["kind"], errors)
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.fixture(scope="module")
def production() -> Docs:
    return {(d["kind"], d["metadata"]["name"]): d for d in render("overlays/production")}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
    return container


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are read here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("target", ["base", "overlays/production"])
def test_kustomize_renders_manifests_valid_for_kubernetes(target: str) -> None:
    documents = render(target)
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "ConfigMap",
            "PodDisruptionBudget", "NetworkPolicy", "Gateway", "HTTPRoute"} <= kinds
    for doc in documents:
        _validate(doc)
    with pytest.raises(kubernetes_validate.ValidationError):  # each check does bite
        _validate({**documents[0], "spec": {"bogus": True}})
    route = next(d for d in documents if d["kind"] == "HTTPRoute")
    with pytest.raises(AssertionError):
        _validate({**route, "spec": {**route["spec"], "timeouts": {"request": "30s"}}})
    with pytest.raises(AssertionError):
        _validate({**route, "spec": {**route["spec"], "hostnames": ["Not A Host!"]}})


def test_engines_gpus_flags_and_secrets(production: Docs) -> None:
    for name, model in ENGINES.items():
        engine = production[("StatefulSet", name)]
        container = _container(engine)
        assert container["image"] == "vllm/vllm-openai:v0.32.0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert without(container["args"][1:], "--host", "--port", "--served-model-name",
                       "--gpu-memory-utilization", "--middleware", "--shutdown-timeout") == \
            profile_flags(model)
        assert production[("Service", name)]["spec"]["clusterIP"] == "None"  # an address a pod
        assert engine["spec"]["serviceName"] == name
        assert engine["metadata"]["namespace"] == "tram"
    assert production[("StatefulSet", "vllm-qwen-text")]["spec"]["replicas"] == 2
    gateway = production[("Deployment", "tram")]
    assert gateway["spec"]["replicas"] == 3
    assert _container(gateway)["image"] == "registry.example.com/tram:0.1.0"
    secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in _container(gateway)["env"]}
    assert secrets == {"master-key", "database-url", "redis-url", "engine-key"}
    assert production[("HorizontalPodAutoscaler", "tram")]["spec"]["minReplicas"] == 3
    config = next(d for (kind, _), d in production.items() if kind == "ConfigMap"
                  and "tram.yaml" in d["data"])
    parsed = parse_config(yaml.safe_load(config["data"]["tram.yaml"]), "configmap", ENV)
    assert all(m.upstreams[0].discover == "dns" for m in parsed.models)


def _window(probe: dict[str, Any]) -> int:
    """Seconds of failed probes before the kubelet acts: period × threshold (defaults 10 × 3)."""
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


def test_engines_roll_out_without_a_surge_and_are_not_killed_for_being_busy(
        production: Docs) -> None:
    for name in ENGINES:
        assert ("Deployment", name) not in production  # a surge pod would wait for a GPU
        engine = production[("StatefulSet", name)]
        assert engine["spec"]["updateStrategy"]["type"] == "RollingUpdate"  # one pod at a time
        assert engine["spec"]["podManagementPolicy"] == "Parallel"
        container = _container(engine)
        probes = {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
        for kind, probe in probes.items():
            assert probe["httpGet"]["path"] == "/health", kind
            assert probe.get("timeoutSeconds", 1) >= 5, f"{name} {kind}: 1 s default timeout"
        assert _window(probes["startupProbe"]) >= 1800  # a first download and load
        assert _window(probes["readinessProbe"]) >= 60  # not unready after 15 s of load
        assert _window(probes["livenessProbe"]) >= 300  # a reload costs minutes: kill late
        # SIGTERM drains (vLLM aborts requests in flight without --shutdown-timeout), after the
        # gateway has stopped sending (preStop), all within the grace period.
        drain = int(flag_value(container["args"], "--shutdown-timeout"))
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert pause >= 10 and drain > 0  # the gateway re-reads the Service every 10 s
        assert engine["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pause + drain


def test_engine_storage_binds_with_any_clouds_default_class(production: Docs) -> None:
    claims = [d for (kind, _), d in production.items() if kind == "PersistentVolumeClaim"]
    assert claims == []  # no shared ReadWriteMany claim that block storage cannot bind
    for name in ENGINES:
        engine = production[("StatefulSet", name)]
        templates = engine["spec"]["volumeClaimTemplates"]
        assert [t["spec"]["accessModes"] for t in templates] == [["ReadWriteOnce"]]
        size = templates[0]["spec"]["resources"]["requests"]["storage"]
        assert int(size.removesuffix("Gi")) >= 40  # ~17 GB of weights + compile cache
        container = _container(engine)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HF_HOME"] == mounts[templates[0]["metadata"]["name"]]
        volumes = {v["name"] for v in engine["spec"]["template"]["spec"]["volumes"]}
        assert templates[0]["metadata"]["name"] not in volumes  # not shadowed by an emptyDir


def test_engines_answer_the_gateway_pods_alone(production: Docs) -> None:
    gateway_labels = production[("Deployment", "tram")]["spec"]["template"]["metadata"]["labels"]
    engine_labels = [production[("StatefulSet", n)]["spec"]["template"]["metadata"]["labels"]
                     for n in ENGINES]
    policies = [d for (kind, _), d in production.items() if kind == "NetworkPolicy"]
    guarding = [p for p in policies if all(_matches(p["spec"]["podSelector"], labels)
                                           for labels in engine_labels)]
    assert len(guarding) == 1, "one NetworkPolicy selects every engine pod"
    spec = guarding[0]["spec"]
    assert not _matches(spec["podSelector"], gateway_labels)
    assert "Ingress" in spec["policyTypes"]
    (rule,) = spec["ingress"]
    assert rule["from"] and all(set(peer) == {"podSelector"} for peer in rule["from"])
    assert all(_matches(peer["podSelector"], gateway_labels) for peer in rule["from"])
    assert not any(_matches(peer["podSelector"], labels)
                   for peer in rule["from"] for labels in engine_labels)
    assert [p["port"] for p in rule["ports"]] == [8000]


def test_engines_require_the_gateways_key_on_every_path(production: Docs) -> None:
    guard_source = (GUARD_DIR / "tram_engine_guard.py").read_text()
    assert (DEPLOY / "kubernetes" / "base" / "tram_engine_guard.py").read_text() == guard_source
    gateway_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in
                   _container(production[("Deployment", "tram")])["env"]}
    for name in ENGINES:
        engine = production[("StatefulSet", name)]
        container = _container(engine)
        assert flag_value(container["args"], "--middleware") == GUARD_MIDDLEWARE
        env = {e["name"]: e for e in container["env"]}
        # The engine's keys are the secret the gateway sends as its upstream api_key.
        assert env[KEY_VARIABLE]["valueFrom"]["secretKeyRef"] == gateway_env["VLLM_API_KEY"]
        assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == gateway_env["VLLM_API_KEY"]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["PYTHONPATH"]["value"])
        volume = next(v for v in engine["spec"]["template"]["spec"]["volumes"]
                      if v["name"] == mount["name"])
        config_map = production[("ConfigMap", volume["configMap"]["name"])]
        assert config_map["data"] == {"tram_engine_guard.py": guard_source}
    config = next(d for (kind, _), d in production.items() if kind == "ConfigMap"
                  and "tram.yaml" in d["data"])
    assert config["data"]["tram.yaml"].count('api_key: "${VLLM_API_KEY}"') == len(ENGINES)


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", duration))


def test_https_through_the_gateway_api_with_cert_manager(production: Docs) -> None:
    rendered = yaml.safe_dump(list(production.values()))
    assert not [key for key in production if key[0] == "Ingress"]
    assert "nginx.ingress.kubernetes.io" not in rendered  # retired controller's annotations
    gateway = production[("Gateway", "tram")]
    assert gateway["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    https = listeners["https"]
    assert (https["protocol"], https["port"], https["tls"]["mode"]) == ("HTTPS", 443, "Terminate")
    assert https["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "tram-tls"}]
    assert {listener["hostname"] for listener in listeners.values()} == {"llm.team.example"}
    route = production[("HTTPRoute", "tram")]
    assert route["spec"]["parentRefs"] == [{"name": "tram", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["llm.team.example"]
    (rule,) = route["spec"]["rules"]
    (backend,) = rule["backendRefs"]
    service = production[("Service", backend["name"])]
    assert backend["port"] in [p["port"] for p in service["spec"]["ports"]]
    assert _matches({"matchLabels": service["spec"]["selector"]},
                    production[("Deployment", "tram")]["spec"]["template"]["metadata"]["labels"])
    config = next(d for (kind, _), d in production.items() if kind == "ConfigMap"
                  and "tram.yaml" in d["data"])
    longest = max(m.timeouts.total for m in parse_config(
        yaml.safe_load(config["data"]["tram.yaml"]), "configmap", ENV).models)
    assert _seconds(rule["timeouts"]["request"]) >= longest  # streams are not cut short
    redirect = production[("HTTPRoute", "tram-redirect-to-https")]
    assert redirect["spec"]["parentRefs"][0]["sectionName"] == "http"
    assert redirect["spec"]["hostnames"] == ["llm.team.example"]


def test_kubernetes_gateway_limits_equal_the_engines(production: Docs) -> None:
    config = next(d for (kind, _), d in production.items() if kind == "ConfigMap"
                  and "tram.yaml" in d["data"])
    parsed = parse_config(yaml.safe_load(config["data"]["tram.yaml"]), "configmap", ENV)
    vl = next(m for m in parsed.models if m.name == "qwen-vl")
    args = _container(production[("StatefulSet", "vllm-qwen-vl")])["args"]
    assert vl.max_images == json.loads(flag_value(args, "--limit-mm-per-prompt"))["image"]
    assert vl.max_pixels == pixel_cap(flag_value(args, "--mm-processor-kwargs"))
