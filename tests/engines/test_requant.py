"""The embedded profile's Q8_0 copy of the default model: same tensors and metadata, made once."""

from __future__ import annotations

from pathlib import Path

import gguf

from tram.engines.requant import q8_0_copy
from tram.engines.up import embedded_profile
from tram.kinds.llamacpp import default_model_path


def test_q8_0_copy_keeps_the_model_and_is_made_once(tmp_path: Path) -> None:
    published = default_model_path()
    assert published is not None
    copy = q8_0_copy(published, tmp_path)
    assert copy is not None and copy.name == "SmolLM2-135M-Instruct.Q8_0.gguf"
    made = copy.stat().st_mtime_ns
    assert q8_0_copy(published, tmp_path) == copy and copy.stat().st_mtime_ns == made

    source, converted = gguf.GGUFReader(published), gguf.GGUFReader(copy)
    assert [t.name for t in converted.tensors] == [t.name for t in source.tensors]
    assert [list(t.shape) for t in converted.tensors] == [list(t.shape) for t in source.tensors]
    kinds = {t.tensor_type.name for t in converted.tensors}
    assert kinds == {"Q8_0", "F32"}
    for key in ("tokenizer.chat_template", "tokenizer.ggml.tokens", "llama.block_count"):
        assert converted.fields[key].data and key in source.fields
    assert converted.fields["general.file_type"].parts[-1][0] == 7  # MOSTLY_Q8_0
    # Weights survive the re-encoding to within Q8_0's step.
    original = gguf.quants.dequantize(source.tensors[5].data, source.tensors[5].tensor_type)
    again = gguf.quants.dequantize(converted.tensors[5].data, converted.tensors[5].tensor_type)
    assert abs(original - again).max() <= abs(original).max() / 100


def test_the_embedded_profile_serves_the_q8_0_copy() -> None:
    model = embedded_profile()["models"][0]["engine"]["model"]
    assert model.endswith(".Q8_0.gguf") and Path(model).is_file()
