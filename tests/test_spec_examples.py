"""The user's guide, verbatim: its curl and Python examples against the real `tram up`.

The examples are read from the guide itself (tests/spec/api-guide.vi.md, a copy of
shared/spec/api-guide.vi.md); only the host and the key are replaced, as a user would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp

GUIDE = Path(__file__).parent / "spec" / "api-guide.vi.md"
SPEC_HOST = "https://vllm.anm05.com"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)


def _localise(text: str, up: TramUp) -> str:
    return (text.replace(SPEC_HOST, up.url)
            .replace("<LITELLM_MASTER_KEY>", MASTER_KEY)
            .replace("your-litellm-master-key", MASTER_KEY))


def _curl(index: int, up: TramUp) -> tuple[str, str]:
    """Run the guide's curl example number `index`; (stdout, the command)."""
    command = _localise(_blocks("bash")[index], up)
    assert command.lstrip().startswith("curl"), command
    # Output flags only (quiet, and the status code on a last line); the example is unchanged.
    command = command.replace("curl ", "curl -sS -w '\\n%{http_code}' ", 1)
    result = subprocess.run(["bash", "-c", command],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout, command


def test_the_guide_has_the_examples_these_tests_run() -> None:
    assert len(_blocks("bash")) == 4
    assert len(_blocks("python")) == 1


def test_section_2_models_list(embedded: TramUp) -> None:
    out, _ = _curl(0, embedded)
    body, status = out.rsplit("\n", 1)
    assert status == "200"
    models = orjson.loads(body)
    qwen_text = next(m for m in models["data"] if m["id"] == "qwen-text")
    assert qwen_text["object"] == "model"
    assert "NOT Qwen3-8B" in qwen_text["description"]
    assert qwen_text["root"] == "SmolLM2-135M-Instruct"


def test_section_3_text_chat_gets_a_real_answer(embedded: TramUp) -> None:
    out, _ = _curl(1, embedded)
    body, status = out.rsplit("\n", 1)
    assert status == "200", body
    answer = orjson.loads(body)
    assert answer["model"] == "qwen-text"
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"].strip()
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 20  # the system and user messages in the chat template
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_section_4_vision_without_a_vision_model_says_how_to_add_one(embedded: TramUp) -> None:
    out, _ = _curl(2, embedded)
    body, status = out.rsplit("\n", 1)
    assert status == "404"
    error = orjson.loads(body)["error"]
    assert error["code"] == "model_not_found"
    assert "tram up --model qwen-vl=" in error["message"]


def test_section_5_streaming_is_sse_with_real_text(embedded: TramUp) -> None:
    out, _ = _curl(3, embedded)
    body, status = out.rsplit("\n", 1)
    assert status == "200"
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["model"] == "qwen-text" and c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text.strip()) > 10
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_section_6_python_client_verbatim(embedded: TramUp, tmp_path: Path) -> None:
    script = tmp_path / "guide_example.py"
    script.write_text(_localise(_blocks("python")[0], embedded))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    simple, streamed = result.stdout.split("\n--- Streaming ---\n")
    assert simple.startswith("Response: ") and len(simple.strip()) > len("Response: ") + 2
    assert len(streamed.strip()) > 10


def test_section_6_python_vision_function_reports_the_missing_model(embedded: TramUp,
                                                                   tmp_path: Path) -> None:
    script = tmp_path / "guide_vision.py"
    code = _localise(_blocks("python")[0], embedded).split('if __name__ == "__main__":')[0]
    script.write_text(code + "\nimport openai\ntry:\n    chat_vision()\n"
                      "except openai.NotFoundError as exc:\n    print('404', exc.body['message'])\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("404") and "qwen-vl" in result.stdout
