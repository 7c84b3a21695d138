"""deploy/ validated offline: the Compose file against the compose-spec schema (vendored by
check-jsonschema), the Kustomize base and production overlay rendered by `kubectl kustomize`
and every manifest checked against the Kubernetes schemas (kubernetes-validate, strict), the
gateway configs they ship parsed by Trạm itself, and the engines' flags equal to what
`tram up --profile qwen` would run, so the three ways to deploy cannot drift apart."""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import MASTER_KEY
from tram.config import Settings, parse_config
from tram.engines.up import load_up_config
from tram.engines.vllm import vllm_flags

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES = "1.32.0"  # the oldest Kubernetes the manifests promise to work on
ENV = {"TRAM_DATABASE_URL": "postgresql://tram:x@postgres/tram", "TRAM_REDIS_URL": "redis://r:6379/0",
       "VLLM_API_KEY": "sk-engine"}


def _profile_flags(model: str) -> list[str]:
    """The vLLM flags `tram up --profile qwen` gives `model`, without host, port and name."""
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None)
    config = next(m for m in load_up_config(settings, [], "qwen").models if m.name == model)
    assert config.engine is not None
    flags = vllm_flags(config.engine.model_copy(update={"gpu_memory_utilization": None}),
                       config.engine.model, 8000)
    for name in ("--host", "--port", "--served-model-name"):
        i = flags.index(name)
        del flags[i:i + 2]
    return flags


def _without(args: list[str], *names: str) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        else:
            out.append(arg)
    return out


# -- Compose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads((importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                         / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    # The validator does refuse what the spec does not allow.
    broken = {**compose, "services": {"x": {"image": "a", "restart": 5, "no_such_key": 1}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_compose_runs_the_guides_system(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"vllm-text", "vllm-vl", "postgres", "redis", "tram", "caddy"}
    for name in ("vllm-text", "vllm-vl"):
        vllm = services[name]
        assert vllm["image"].startswith("vllm/vllm-openai:")
        gpu = vllm["deploy"]["resources"]["reservations"]["devices"][0]
        assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
        assert "hf-cache:/root/.cache/huggingface" in vllm["volumes"]
        assert "/health" in " ".join(vllm["healthcheck"]["test"])
    # One engine after the other (vLLM sizes its memory from what is free when it starts).
    assert services["vllm-vl"]["depends_on"] == {"vllm-text": {"condition": "service_healthy"}}
    assert all(services["tram"]["depends_on"][s]["condition"] == "service_healthy"
               for s in ("postgres", "redis", "vllm-text", "vllm-vl"))
    assert "${LITELLM_MASTER_KEY" in services["tram"]["environment"]["TRAM_MASTER_KEY"]
    assert services["caddy"]["ports"][:2] == ["80:80", "443:443"]
    assert {"hf-cache", "pgdata", "tram-data", "caddy-data"} <= set(compose["volumes"])
    assert "{$TRAM_DOMAIN}" in (DEPLOY / "Caddyfile").read_text()
    example = (DEPLOY / ".env.example").read_text()
    assert all(var in example for var in ("TRAM_MASTER_KEY", "LITELLM_MASTER_KEY", "TRAM_DOMAIN",
                                          "VLLM_API_KEY", "POSTGRES_PASSWORD"))


def test_compose_engines_use_the_profiles_flags(compose: dict[str, Any]) -> None:
    for service, model in (("vllm-text", "qwen-text"), ("vllm-vl", "qwen-vl")):
        command = compose["services"][service]["command"]
        flags = _without(command[1:], "--host", "--port", "--served-model-name",
                         "--gpu-memory-utilization")
        assert flags == _profile_flags(model), service


def test_the_gateway_configs_shipped_for_compose_and_kubernetes_parse() -> None:
    for path in (DEPLOY / "tram.compose.yaml", DEPLOY / "kubernetes" / "base" / "tram.yaml"):
        config = parse_config(yaml.safe_load(path.read_text()), str(path), ENV)
        assert [m.name for m in config.models] == ["qwen-text", "qwen-vl"]
        assert [m.upstreams[0].served_name for m in config.models] == \
            ["Qwen/Qwen3-8B", "Qwen/Qwen3-VL-8B-Instruct"]
        assert all(m.upstreams[0].api_key == "sk-engine" for m in config.models)


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) == 2
    final = stages[-1]
    assert "build-essential" in stages[0] and "build-essential" not in final
    assert re.search(r"^USER 10001$", final, re.M) and "HEALTHCHECK" in final
    assert "/health" in final and "EXPOSE 4000" in final


# -- Kubernetes ---------------------------------------------------------------------------


def _render(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (with kustomize) is needed to render deploy/kubernetes"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kubernetes" / target)],
                         capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("target", ["base", "overlays/production"])
def test_kustomize_renders_manifests_valid_for_kubernetes(target: str) -> None:
    documents = _render(target)
    kinds = sorted(doc["kind"] for doc in documents)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress",
            "ConfigMap"} <= set(kinds)
    for doc in documents:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):  # the check does bite
        kubernetes_validate.validate({**documents[0], "spec": {"bogus": True}}, KUBERNETES,
                                     strict=True)


def test_kubernetes_engines_gpus_probes_and_secrets() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in _render("overlays/production")}
    for model, name in (("qwen-text", "vllm-qwen-text"), ("qwen-vl", "vllm-qwen-vl")):
        deployment = documents[("Deployment", name)]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "tram-secrets",
                                                                    "key": "engine-key"}
        flags = _without(container["args"][1:], "--host", "--port", "--served-model-name",
                         "--gpu-memory-utilization")
        assert flags == _profile_flags(model)
        assert documents[("Service", name)]["spec"]["clusterIP"] == "None"  # one address a pod
        assert deployment["metadata"]["namespace"] == "tram"
    assert documents[("Deployment", "vllm-qwen-text")]["spec"]["replicas"] == 2
    gateway = documents[("Deployment", "tram")]
    assert gateway["spec"]["replicas"] == 3
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example.com/tram:0.1.0"
    secrets = {e["valueFrom"]["secretKeyRef"]["key"]
               for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert secrets == {"master-key", "database-url", "redis-url", "engine-key"}
    assert documents[("HorizontalPodAutoscaler", "tram")]["spec"]["minReplicas"] == 3
    ingress = documents[("Ingress", "tram")]
    assert ingress["spec"]["tls"][0]["hosts"] == ["llm.team.example"]
    config = next(d for (kind, _), d in documents.items() if kind == "ConfigMap")
    parsed = parse_config(yaml.safe_load(config["data"]["tram.yaml"]), "configmap", ENV)
    assert all(m.upstreams[0].discover == "dns" for m in parsed.models)
