"""Re-encode the default model's Q4_1 weights as Q8_0, once, for the embedded CPU engine.

Why: on 2 cores the engine is compute-bound as soon as several requests decode together, and
llama.cpp's Q8_0 kernels do a batched step in less time than Q4_1's (measured on SmolLM2-135M,
8 concurrent streams: 130–159 tok/s with Q4_1, 160–188 with Q8_0; one stream unchanged at
~75–87). Every Q4_1 weight (scale·q + min, q in 0..15) is held by Q8_0 (scale'·q8, per block
of 32) to within 1/254 of its block's largest value: the same model, though not bit for bit
(greedy answers agree for their first tokens, then may drift as any numeric change makes a
135M model's do). The conversion takes ~10 s once and is cached next to the other Trạm caches;
a GGUF named with `--model` or in tram.yaml is always served as it is.

Uses the `gguf` package (ggml's own reader/writer); without it the Q4_1 file is served as is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["q8_0_copy"]

_MOSTLY_Q8_0 = 7  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0, written to general.file_type


def q8_0_copy(source: Path, cache_dir: Path) -> Path | None:
    """The Q8_0 copy of `source` (made now if missing), or None if `gguf` is not installed."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        return None
    target = cache_dir / (source.name.replace(".Q4_1.", ".").removesuffix(".gguf") + ".Q8_0.gguf")
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    try:
        _convert(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _field_value(field: Any) -> Any:
    import gguf

    kind = field.types[0]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if kind == gguf.GGUFValueType.ARRAY:
        if field.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.parts[field.data[0]].tolist()[0]


def _convert(source: Path, target: Path) -> None:
    import gguf
    import numpy as np

    quant = gguf.GGMLQuantizationType
    reader = gguf.GGUFReader(source)
    architecture = _field_value(reader.fields["general.architecture"])
    writer = gguf.GGUFWriter(target, architecture)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = _field_value(field)
        if name == "general.file_type":
            value = _MOSTLY_Q8_0
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, field.types[0], sub_type=sub_type)
    for tensor in reader.tensors:
        shape = list(reversed([int(d) for d in tensor.shape]))
        weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        weights = weights.astype(np.float32)
        if tensor.tensor_type == quant.F32:  # norms stay full precision
            writer.add_tensor(tensor.name, weights, raw_dtype=quant.F32)
            continue
        packed = gguf.quants.quantize(weights, quant.Q8_0)
        writer.add_tensor(tensor.name, packed, raw_shape=packed.shape, raw_dtype=quant.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
