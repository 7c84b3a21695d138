"""Reasoning a stateless client keeps for the gateway: the Responses API's
`include: ["reasoning.encrypted_content"]`.

A client that stores nothing on the server (`store: false`: Codex) sends its earlier reasoning
items back with each turn. The gateway answers each reasoning item with `encrypted_content`:
its text sealed with AES-GCM under a key derived from the master key (so every gateway process
and host of a deployment can open what any of them sealed, and nothing is stored), the key id
that asked bound in as associated data (another key cannot open it). When such an item comes
back, it is opened and its text is given to the engine as the reasoning of that turn; an item
that does not open (altered, sealed for another key, or under a master key since rotated) is a
400 naming it.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tram.errors import InvalidRequest

__all__ = ["INCLUDE", "Sealer", "wants_sealing"]

INCLUDE = "reasoning.encrypted_content"
_NONCE = 12
_PREFIX = "tram1:"  # a version, so that another scheme can follow without ambiguity


class Sealer:
    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"tram reasoning encrypted_content").derive(secret.encode())
        self._aead = AESGCM(key)

    def seal(self, text: str, owner: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, orjson.dumps({"text": text}), owner.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: Any, owner: str, param: str) -> str:
        refused = InvalidRequest("This reasoning item's encrypted_content cannot be opened: it "
                                 "was altered, or sealed for another key or by another "
                                 "deployment.", param=param, code="invalid_encrypted_content")
        if not isinstance(token, str) or not token.startswith(_PREFIX):
            raise refused
        try:
            raw = base64.urlsafe_b64decode(token[len(_PREFIX):])
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], owner.encode())
            text = orjson.loads(plain)["text"]
        except (binascii.Error, ValueError, InvalidTag, KeyError, TypeError):
            raise refused from None
        if not isinstance(text, str):
            raise refused
        return text

    def seal_item(self, item: Any, owner: str) -> None:
        """A finished reasoning output item, given its sealed text."""
        if isinstance(item, dict) and item.get("type") == "reasoning" \
                and item.get("status") != "in_progress":
            text = "".join(part.get("text", "") for part in item.get("content") or ()
                           if isinstance(part, dict))
            item["encrypted_content"] = self.seal(text, owner)

    def open_items(self, items: Any, owner: str) -> None:
        """Reasoning input items sent back: each sealed one opened into its text content (what
        an engine and the chat bridge read), its encrypted_content taken out."""
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, dict) and item.get("type") == "reasoning" \
                    and "encrypted_content" in item:
                text = self.open(item.pop("encrypted_content"), owner,
                                 f"input[{index}].encrypted_content")
                item["content"] = [{"type": "reasoning_text", "text": text}]


def wants_sealing(payload: dict[str, Any]) -> bool:
    include = payload.get("include")
    return isinstance(include, list) and INCLUDE in include
