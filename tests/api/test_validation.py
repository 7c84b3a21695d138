"""Validation like OpenAI's: strict types for documented fields, a `param` that names the field
that is wrong, values the store cannot hold refused with a 400 (never a 500), and codes that say
what happened."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.keys import key_with

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", "0.5"), ("temperature", True), ("top_p", "0.1"),
    ("presence_penalty", "1"), ("frequency_penalty", False), ("logprobs", "yes"),
    ("top_logprobs", 1.5), ("parallel_tool_calls", 1), ("metadata", {"a": 1}),
    ("logit_bias", {"50256": "-100"}), ("store", "true"),
])
def test_lenient_types_are_refused_before_the_engine(gateway: GatewayFactory, auth: dict,
                                                     engine_log: EngineLog, field: str,
                                                     value: object) -> None:
    with gateway() as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth,
                            json={"model": "qwen-text", "messages": USER, field: value})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"].split(".")[0], error["type"]) == \
        ("invalid_type", field, "invalid_request_error")  # (metadata.a: the value that is wrong)
    assert engine_log.received == []


def test_numbers_and_unknown_fields_still_pass(gateway: GatewayFactory, auth: dict,
                                               engine_log: EngineLog) -> None:
    with gateway() as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-text", "messages": USER, "temperature": 1, "top_p": 0.5,
            "top_k": 20, "chat_template_kwargs": {"enable_thinking": False}})
    assert answer.status_code == 200
    sent = engine_log.received[-1]
    assert (sent["temperature"], sent["top_k"], sent["chat_template_kwargs"]) == \
        (1, 20, {"enable_thinking": False})


def test_param_points_at_the_field_that_is_wrong(gateway: GatewayFactory, auth: dict) -> None:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": 5}}]
    with gateway() as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": content}]})
        text_part = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": [{"type": "text"}]}]})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "messages[0].content[1].image_url.url"
    assert answer.json()["error"]["code"] == "invalid_type"
    assert text_part.json()["error"]["param"] == "messages[0].content[0].text"


@pytest.mark.parametrize(("body", "param"), [
    ({"name": "k", "rpm": 2**63}, "rpm"),
    ({"name": "k", "tpm": 2**31}, "tpm"),
    ({"name": "k", "max_concurrency": 2**40}, "max_concurrency"),
    ({"name": "k", "budget_tokens": 2**63}, "budget_tokens"),
    ({"name": "k", "max_total_tokens": 2**64}, "max_total_tokens"),
    ({"name": "k", "expires_at": "0001-01-01T00:00:00+05:00"}, "expires_at"),
    ({"name": "k", "expires_at": "9999-12-31T23:00:00-05:00"}, "expires_at"),
    ({"name": "k", "rpm": True}, "rpm"),
    ({"name": "k", "admin": "yes"}, "admin"),
    ({"name": "bad\x00name"}, "name"),
    ({"name": "k", "owner": "tab\there"}, "owner"),
    ({"name": "k", "models": ["qwen-text", 5]}, "models[1]"),
])
def test_admin_values_the_store_cannot_hold_are_400(gateway: GatewayFactory, auth: dict,
                                                    body: dict, param: str) -> None:
    with gateway() as url:
        created = httpx.post(url + "/admin/keys", headers=auth, json=body)
        listed = httpx.get(url + "/admin/keys", headers=auth).json()["data"]
    assert created.status_code == 400, created.text
    assert created.json()["error"]["param"] == param
    assert listed == []  # nothing was stored


def test_patch_refuses_a_null_name_and_keeps_the_key(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        made = httpx.post(url + "/admin/keys", headers=auth, json={"name": "keep"}).json()
        answers = [httpx.patch(url + f"/admin/keys/{made['id']}", headers=auth, json=body)
                   for body in ({"name": None}, {"rpm": 2**63}, {"admin": 1},
                                {"expires_at": "0001-01-01T00:00:00+01:00"})]
        after = httpx.get(url + f"/admin/keys/{made['id']}", headers=auth).json()
        cleared = httpx.patch(url + f"/admin/keys/{made['id']}", headers=auth,
                              json={"owner": None, "models": None, "expires_at": None})
    assert [a.status_code for a in answers] == [400, 400, 400, 400]
    assert [a.json()["error"]["param"] for a in answers] == ["name", "rpm", "admin", "expires_at"]
    assert after["name"] == "keep"
    assert cleared.status_code == 200


def test_usage_view_refuses_a_days_value_out_of_range(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        answers = [httpx.get(url + "/admin/usage", headers=auth, params={"days": days})
                   for days in ("1e400", "nan", "1e12", "x")]
    assert {a.status_code for a in answers} == {400}
    assert {a.json()["error"]["param"] for a in answers} == {"days"}


def test_a_virtual_key_on_an_admin_route_is_told_it_lacks_permission(
        gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        headers = key_with(url, auth)
        answers = [httpx.get(url + "/admin/keys", headers=headers),
                   httpx.get(url + "/admin/usage", headers=headers),
                   httpx.get(url + "/metrics", headers=headers)]
    for answer in answers:
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "insufficient_permissions"
        assert answer.json()["error"]["type"] == "permission_error"
