"""The routes beside chat on the real embedded engine (SmolLM2 on llama-server, as README's
`tram up` runs it), with the `openai` and `anthropic` clients: completions, tokenize and
detokenize, Responses (over the engine's chat completions) with stored conversations, and
Anthropic Messages (llama-server's own); embeddings, which it cannot serve, are a 404 that
says how to get them."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def client(embedded: TramUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=embedded.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def test_completions_json_and_stream(client: openai.OpenAI) -> None:
    done = client.completions.create(model="qwen-text", prompt="The capital of France is",
                                     max_tokens=6, temperature=0)
    assert done.model == "qwen-text" and done.choices[0].text.strip()
    assert done.usage is not None and done.usage.completion_tokens == 6
    pieces = list(client.completions.create(model="qwen-text", prompt="One, two,",
                                            max_tokens=5, temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices).strip()


def test_tokenize_and_detokenize_round_trip(embedded: TramUp) -> None:
    tokens = httpx.post(embedded.url + "/tokenize", headers=AUTH,
                        json={"model": "qwen-text", "content": "Xin chào Hà Nội"}).json()
    assert len(tokens["tokens"]) > 3
    text = httpx.post(embedded.url + "/detokenize", headers=AUTH,
                      json={"model": "qwen-text", "tokens": tokens["tokens"]}).json()
    assert text["content"].strip() == "Xin chào Hà Nội"


def test_responses_with_a_stored_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model="qwen-text", instructions="Answer in one line.",
                                    input="Remember the code word: lotus.",
                                    max_output_tokens=16, temperature=0)
    assert first.output_text and first.usage is not None and first.usage.input_tokens > 10
    with client.responses.stream(model="qwen-text", input="What was the code word?",
                                 previous_response_id=first.id, max_output_tokens=400,
                                 temperature=0) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        second = stream.get_final_response()
    assert deltas == second.output_text and second.previous_response_id == first.id
    assert second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text


def test_anthropic_messages_json_and_stream(embedded: TramUp) -> None:
    claude = anthropic.Anthropic(base_url=embedded.url, api_key=MASTER_KEY, max_retries=0)
    message = claude.messages.create(model="qwen-text", max_tokens=8, system="Be brief.",
                                     messages=[{"role": "user", "content": "Say hello."}])
    assert message.model == "qwen-text" and message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens") and message.usage.output_tokens
    with claude.messages.stream(model="qwen-text", max_tokens=8,
                                messages=[{"role": "user", "content": "Count to five."}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]


def test_embeddings_are_a_404_with_a_how_to(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="qwen-text", input="hello")
    assert "does not serve POST /v1/embeddings" in str(missing.value)
    assert "--embeddings" in str(missing.value)
