"""The routes beside chat on the real embedded engine (SmolLM2 on llama-server, as README's
`tram up` runs it), with the `openai` and `anthropic` clients: completions, tokenize and
detokenize, Responses (over the engine's chat completions) with stored conversations, and
Anthropic Messages (llama-server's own), and embeddings from the profile's real embedding model
(all-MiniLM-L6-v2 on its own llama-server)."""

from __future__ import annotations

import math

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


def test_anthropic_count_tokens_uses_the_engines_tokenizer(embedded: TramUp) -> None:
    """What Claude Code asks before a long turn: the engine's own count, longer for more."""
    claude = anthropic.Anthropic(base_url=embedded.url, api_key=MASTER_KEY, max_retries=0)
    short = claude.messages.count_tokens(model="qwen-text", messages=[
        {"role": "user", "content": "Say hello."}])
    longer = claude.messages.count_tokens(model="qwen-text", system="Be brief.", messages=[
        {"role": "user", "content": "Say hello. " * 20}])
    assert 0 < short.input_tokens < longer.input_tokens


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_from_the_real_embedding_model(client: openai.OpenAI,
                                                  embedded: TramUp) -> None:
    texts = ["The cat sits on the mat.", "A kitten is resting on a rug.",
             "Quarterly revenue grew by twelve percent."]
    answer = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    vectors = [item.embedding for item in answer.data]
    assert answer.model == "all-minilm-l6-v2" and len(vectors) == 3
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)  # normalised
    # Meaning, not spelling: the two sentences about a cat are far closer than the third.
    assert _cosine(vectors[0], vectors[1]) > 0.5 > _cosine(vectors[0], vectors[2]) + 0.3
    assert answer.usage.prompt_tokens > 10
    rows = httpx.get(embedded.url + "/admin/usage", params={"by": "route"},
                     headers=AUTH).json()["data"]
    assert any(row["route"] == "embeddings" and row["prompt_tokens"] > 10 for row in rows)


def test_what_a_model_does_not_serve_is_a_404_with_a_how_to(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="qwen-text", input="hello")
    assert "does not serve POST /v1/embeddings" in str(missing.value)
    assert "--embeddings" in str(missing.value)
    with pytest.raises(openai.NotFoundError) as chat:  # llama-server --embeddings: a 501
        client.chat.completions.create(model="all-minilm-l6-v2",
                                       messages=[{"role": "user", "content": "hi"}])
    assert "does not serve POST /v1/chat/completions" in str(chat.value)
