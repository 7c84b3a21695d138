"""OpenAI semantics through the gateway to the real embedded engine, with the real `openai` client."""

from __future__ import annotations

import contextlib
import time

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def client(embedded: TramUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=embedded.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def test_max_tokens_stops_with_length_and_exact_usage(client: openai.OpenAI) -> None:
    for limit in ({"max_tokens": 5}, {"max_completion_tokens": 6}):
        answer = client.chat.completions.create(model="qwen-text", messages=QUESTION,
                                                temperature=0, **limit)  # type: ignore[call-overload]
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage is not None
        assert answer.usage.completion_tokens == next(iter(limit.values()))


def test_stop_sequence_cuts_the_answer(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="qwen-text", messages=QUESTION, temperature=0,
                                          max_tokens=30, seed=1)
    text = full.choices[0].message.content or ""
    words = text.split()
    assert len(words) > 3, text
    stop_word = words[2]
    cut = client.chat.completions.create(model="qwen-text", messages=QUESTION, temperature=0,
                                         max_tokens=30, seed=1, stop=[stop_word, "\n\n\n"])
    assert cut.choices[0].finish_reason == "stop"
    assert stop_word not in (cut.choices[0].message.content or "")
    assert text.startswith((cut.choices[0].message.content or "").rstrip())


def test_same_seed_same_text_and_temperature_zero_is_repeatable(client: openai.OpenAI) -> None:
    def ask(**kwargs: object) -> str:
        answer = client.chat.completions.create(model="qwen-text", messages=QUESTION,
                                                max_tokens=20, **kwargs)  # type: ignore[call-overload]
        return answer.choices[0].message.content or ""

    assert ask(temperature=0.9, seed=1234) == ask(temperature=0.9, seed=1234)
    assert ask(temperature=0) == ask(temperature=0)
    assert ask(temperature=0.9, top_p=0.9, seed=7)


def test_system_message_and_history_reach_the_model(client: openai.OpenAI) -> None:
    system = {"role": "system", "content": "You are a terse assistant who answers in English."}
    history = [{"role": "user", "content": "Hello there, my name is Lan."},
               {"role": "assistant", "content": "Hi Lan! How can I help you today?"}]

    def prompt_tokens(messages: list) -> int:
        answer = client.chat.completions.create(model="qwen-text", messages=messages, max_tokens=1)
        assert answer.usage is not None
        return answer.usage.prompt_tokens

    bare, with_system = prompt_tokens(QUESTION), prompt_tokens([system, *QUESTION])
    with_history = prompt_tokens([system, *history, *QUESTION])
    # The chat template renders every message: each added turn lengthens the prompt.
    assert with_system != bare
    assert with_history >= with_system + 16


def test_stream_with_include_usage_ends_with_a_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="qwen-text", messages=QUESTION, max_tokens=8,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    plain = client.chat.completions.create(model="qwen-text", messages=QUESTION, max_tokens=8,
                                           temperature=0)
    assert plain.usage is not None
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content


def test_chat_template_kwargs_and_vllm_extras_pass_through(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="qwen-text", messages=QUESTION, max_tokens=4,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}, "top_k": 20,
                    "repetition_penalty": 1.05})
    assert answer.choices[0].message.content


def test_n_gives_n_choices(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="qwen-text", messages=QUESTION, max_tokens=4, n=2,
                                            temperature=0.9)
    assert [c.index for c in answer.choices] == [0, 1]


def test_bad_input_is_an_openai_error_in_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="qwen-text", messages=QUESTION, max_tokens=0)
    assert caught.value.body["param"] == "max_tokens"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="nope", max_retries=0).models.list()


def test_concurrent_requests_are_decoded_together_not_serialised(embedded: TramUp) -> None:
    """8 streams in flight at once are all being generated by the engine at the same time.

    (How much faster that is than one after another is measured in bench/, not here.)
    """
    engine = embedded.engine_client("qwen-text", timeout=10, headers={
        "Authorization": "Bearer " + embedded.engine_key("qwen-text")})
    body = {"model": "qwen-text", "messages": QUESTION, "max_tokens": 400, "ignore_eos": True,
            "stream": True}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    readers = []  # kept alive: a dropped line iterator closes its response
    with contextlib.ExitStack() as streams:
        for _ in range(8):
            response = streams.enter_context(httpx.stream(
                "POST", embedded.url + "/v1/chat/completions", json=body, headers=headers,
                timeout=120))
            readers.append(response.iter_lines())
            next(line for line in readers[-1] if line.startswith("data: "))  # it has started
        slots = engine.get("/slots").json()
        busy = sum(1 for slot in slots if slot["is_processing"])
    assert busy == 8
    # Closing the streams cancelled them: the engine stops generating for nobody.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not any(s["is_processing"] for s in engine.get("/slots").json()):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the engine kept generating after the clients left")
