"""Reasoning sealed for a stateless client: opened only by the deployment and the key that
sealed it, never altered unnoticed."""

from __future__ import annotations

import pytest

from tram.errors import InvalidRequest
from tram.relay.sealing import Sealer, wants_sealing


def test_a_sealed_reasoning_opens_for_its_key_only() -> None:
    sealer = Sealer("sk-master")
    token = sealer.seal("The user greets me.", "key_a")
    assert "greets" not in token
    assert sealer.open(token, "key_a", "p") == "The user greets me."
    for owner, opener, value in (("key_b", sealer, token),
                                 ("key_a", Sealer("sk-other-master"), token),
                                 ("key_a", sealer, token[:-6] + "AAAAAA"),
                                 ("key_a", sealer, "not sealed")):
        with pytest.raises(InvalidRequest) as refused:
            opener.open(value, owner, "input[1].encrypted_content")
        assert refused.value.code == "invalid_encrypted_content"
        assert refused.value.param == "input[1].encrypted_content"


def test_items_are_sealed_when_finished_and_opened_when_sent_back() -> None:
    sealer = Sealer("sk-master")
    item = {"type": "reasoning", "status": "completed",
            "content": [{"type": "reasoning_text", "text": "plan"}]}
    sealer.seal_item(item, "key_a")
    sealer.seal_item(streaming := {"type": "reasoning", "status": "in_progress"}, "key_a")
    assert "encrypted_content" in item and "encrypted_content" not in streaming
    sent_back = [{"role": "user", "content": "hi"},
                 {"type": "reasoning", "summary": [], "encrypted_content":
                  item["encrypted_content"]}]
    sealer.open_items(sent_back, "key_a")
    assert sent_back[1] == {"type": "reasoning", "summary": [],
                            "content": [{"type": "reasoning_text", "text": "plan"}]}
    assert wants_sealing({"include": ["reasoning.encrypted_content"]})
    assert not wants_sealing({"include": "reasoning.encrypted_content"})
