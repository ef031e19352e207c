"""Whisper behind the Recognizer interface: transcripts, a teacher-forced loss, token
posteriors and seeded dropout realisations.

The transformer is Hugging Face's ``WhisperForConditionalGeneration``; this module adds what
asrguard needs around it:

* a differentiable log-mel front end (:func:`log_mel`, ``torch.stft``) equal to Whisper's
  feature extractor, so gradients reach the waveform;
* the encoder on the audio's own length (``window="own"``, positional embeddings sliced)
  or on Whisper's 30 s window (``window="30s"``);
* greedy decoding with a key-value cache and Whisper's token suppression, English-only
  prompt ``<|startoftranscript|><|notimestamps|>``;
* ``loss``: the cross-entropy of the target's tokens (plus end of text), teacher-forced,
  summed per utterance (the negative log-likelihood of the target transcript);
* ``log_probs``: the decoder's token distributions along its own greedy transcript, so
  ``decode(log_probs)`` gives the transcript back;
* ``stochastic(p, seed)``: Whisper was trained without dropout, so dropout is injected at
  inference at the chosen ``dropout_sites`` (``encoder``, ``decoder`` or both): on the
  output of every attention block and on the feed-forward hidden layer. Masks come from a
  seeded generator. Realisations run as one batch of ``n``; with decoder sites only, the
  encoder runs once.

Utterances of different lengths are run one at a time in ``window="own"`` (so an
utterance's result never depends on what it was batched with), together in ``"30s"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ...audio import validate_waveform
from ...errors import ConfigError, InvalidAudioError, ModelFileError
from ...fileio import sha256_file
from ...text import normalize_english
from ..base import AudioBatch, Realizations
from ...rng import derive, require_seed
from .convert import config_sha256, ensure_converted, verify
from .dropout import SITES, InferenceDropout
from .decoding import SUPPRESSED, medoid_index, pad_steps, padded, select_rows, shared_cross_cache, top_classes
from .features import HOP, SAMPLE_RATE, WINDOW_SAMPLES, log_mel

WINDOWS = ("own", "30s")
#: Cap on generated tokens: Whisper's own limit is 224 for a 30 s window.
MAX_NEW_TOKENS = 224


class WhisperRecognizer:
    """A Hugging Face Whisper model as an asrguard recogniser (all four capabilities).

    Args:
        model: a ``WhisperForConditionalGeneration`` (English-only checkpoints: ``.en``).
        tokenizer: a ``tokenizers.Tokenizer`` with Whisper's special tokens.
        window: ``"own"`` runs the encoder on the audio's own length, ``"30s"`` pads to 30 s.
        dropout_sites: where :meth:`stochastic` injects dropout (``encoder``, ``decoder``, ``both``).
        default_p: dropout rate when :meth:`stochastic` or :meth:`realizations` is given none. 0.02
            at the decoder sites: on 12 native utterances it raised the realisations' WER from
            10.0 % to 13.9 % and drew 3.9 distinct transcripts in 10, while p = 0.05 already gave
            42.9 % and p = 0.1 59.9 % (``docs/results/whisper/dropout.json``).
        weights_sha256: checksum of the weights file, when loaded from one.
        posterior_classes: tokens kept per step in the realisations' posteriors (plus one for the rest).

    Example:
        >>> rec = WhisperRecognizer.load("tiny.en")                     # doctest: +SKIP
        >>> rec.transcribe([waveform])                                  # doctest: +SKIP
        ['He hoped there would be stew for dinner.']
        >>> r = rec.realizations(waveform, n=50, seed=0)                # doctest: +SKIP
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model, tokenizer, *, window: str = "30s", dropout_sites: str = "decoder",
                 default_p: float = 0.02, weights_sha256: str | None = None, name: str = "whisper",
                 posterior_classes: int = 64):
        if window not in WINDOWS:
            raise ConfigError(f"window must be one of {WINDOWS}, got {window!r}")
        if dropout_sites not in SITES:
            raise ConfigError(f"dropout_sites must be one of {SITES}, got {dropout_sites!r}")
        from transformers import WhisperFeatureExtractor  # transformers is heavy: imported with the model

        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.tokenizer = tokenizer
        self.window, self.dropout_sites, self.default_p = window, dropout_sites, float(default_p)
        self.name, self.weights_sha256 = name, weights_sha256
        config = model.config
        self.mel_filters = torch.from_numpy(
            np.asarray(WhisperFeatureExtractor(feature_size=config.num_mel_bins).mel_filters, dtype=np.float32))
        self.eot = self._special("<|endoftext|>")
        self.prompt = [self._special("<|startoftranscript|>"), self._special("<|notimestamps|>")]
        # Every special token (>= the start token) except end-of-text is never emitted.
        suppressed = set(config.suppress_tokens or []) | set(range(self.prompt[0], config.vocab_size))
        self.suppress = torch.tensor(sorted(suppressed))
        self.suppress_begin = torch.tensor(list(config.begin_suppress_tokens or [220, self.eot]))
        self._dropout = InferenceDropout()
        self._vocabulary: list[str] | None = None
        self.posterior_classes = int(posterior_classes)
        self._hooks = self._dropout.install(self.model, self.dropout_sites)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, name: str = "tiny.en", **kwargs) -> "WhisperRecognizer":
        """``tiny.en`` converts the bundled weights once; any other name is a converted folder or a
        Hugging Face model folder / hub name (see :meth:`from_pretrained`)."""
        folder = ensure_converted(name) if name == "tiny.en" else Path(name)
        if not folder.is_dir():
            return cls.from_pretrained(name, **kwargs)
        if (folder / "tokenizer.json").is_file() and (folder / "model.safetensors").is_file():
            return cls.from_folder(folder, **kwargs)
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)  # a save_pretrained folder

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **kwargs) -> "WhisperRecognizer":
        """A folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json``; checksum verified."""
        # heavy (transformers, tokenizers): imported only when a model is loaded
        from tokenizers import Tokenizer
        from transformers import WhisperConfig, WhisperForConditionalGeneration

        folder = Path(folder)
        for needed in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (folder / needed).is_file():
                raise ModelFileError(f"{folder}: no {needed}; expected a converted Whisper folder")
        checksum = verify(folder)
        raw = json.loads((folder / "config.json").read_text())
        raw_config = {k: v for k, v in raw.items() if k != "asrguard"}
        config = WhisperConfig(**raw_config)
        model = WhisperForConditionalGeneration(config)
        state = load_file(folder / "model.safetensors")
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if m != "proj_out.weight"]  # tied to the token embedding
        if missing or unexpected:
            raise ModelFileError(f"{folder}: weights do not fit the config (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        model.tie_weights()
        kwargs.setdefault("name", f"whisper:{folder.name}")
        recognizer = cls(model, Tokenizer.from_file(str(folder / "tokenizer.json")), weights_sha256=checksum, **kwargs)
        # the files besides the weights that decide the outputs: the model config and the tokenizer
        recognizer.files_sha256 = {"config": config_sha256(raw_config),
                                   "tokenizer": sha256_file(folder / "tokenizer.json")}
        return recognizer

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, local_files_only: bool = False, **kwargs) -> "WhisperRecognizer":
        """Any Whisper checkpoint Hugging Face can load (hub name or ``save_pretrained`` folder), safetensors only."""
        from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast  # heavy: only when loading

        try:
            model = WhisperForConditionalGeneration.from_pretrained(name_or_path, use_safetensors=True,
                                                                    local_files_only=local_files_only)
            tokenizer = WhisperTokenizerFast.from_pretrained(name_or_path, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:  # as HFCTCRecognizer.from_pretrained: an asrguard error
            where = "a local folder without a loadable" if Path(name_or_path).is_dir() else "not a local folder, nor a"
            raise ModelFileError(f"{name_or_path}: {where} Hugging Face Whisper model with safetensors weights "
                                 f"({exc})") from None
        kwargs.setdefault("name", f"whisper:{name_or_path}")
        return cls(model, tokenizer.backend_tokenizer, **kwargs)

    def _special(self, token: str) -> int:
        index = self.tokenizer.token_to_id(token)
        if index is None:
            raise ModelFileError(f"the tokenizer has no {token}; is this an English-only Whisper tokenizer?")
        return int(index)

    # ------------------------------------------------------------------ Transcriber
    @property
    def vocabulary(self) -> list[str]:
        """Token strings by id (ids the tokenizer does not name, timestamps, as ``<|id|>``)."""
        if self._vocabulary is None:
            self._vocabulary = [self.tokenizer.id_to_token(i) or f"<|{i}|>" for i in range(self.model.config.vocab_size)]
        return self._vocabulary

    def fingerprint(self) -> str | None:
        """SHA-256 over everything that decides the outputs: the weights' checksum, the whole model
        config and the tokenizer as read from the folder (so an edit of either changes it), the
        window, and where dropout goes and how many classes its posteriors keep. None when not
        loaded from a folder (nothing on disk to vouch for)."""
        if self.weights_sha256 is None:
            return None
        config = self.model.config.to_dict()
        described = json.dumps({"weights": self.weights_sha256, "window": self.window,
                                "d_model": config["d_model"], "vocab_size": config["vocab_size"],
                                "layers": [config["encoder_layers"], config["decoder_layers"]],
                                "files": getattr(self, "files_sha256", None), "dropout_sites": self.dropout_sites,
                                "posterior_classes": self.posterior_classes}, sort_keys=True)
        return hashlib.sha256(described.encode()).hexdigest()

    @property
    def checksum(self) -> str | None:
        return self.fingerprint()

    def normalize_text(self, text: str) -> str:
        """Whisper's English normalisation (see :func:`asrguard.text.normalize_english`)."""
        return normalize_english(text)

    def transcribe(self, batch) -> list[str]:
        batch = self._as_batch(batch)
        with torch.no_grad():
            return [self._text(row) for row in self._greedy_all(batch)]

    # ------------------------------------------------------------------ DifferentiableLoss
    def tokens(self, text: str) -> list[int]:
        """Token ids of a transcript as Whisper emits it (with its leading space)."""
        return list(self.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """A target fits when it is non-empty and within the token budget of the input's duration."""
        budgets = [self._token_budget(int(n)) for n in batch.lengths]
        return [bool(t.strip()) and len(self.tokens(t)) < budget for t, budget in zip(targets, budgets)]

    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """Teacher-forced cross-entropy of each target's tokens and end of text, summed: ``(B,)``."""
        batch = self._as_batch(batch)
        if len(targets) != len(batch):
            raise ConfigError(f"{len(targets)} targets for a batch of {len(batch)}")
        if not all(t.strip() for t in targets):  # tokens("") is the space token, never empty
            raise ConfigError("empty target transcript")
        rows = [self.tokens(t) for t in targets]
        out = torch.zeros(len(batch), dtype=batch.waveforms.dtype)
        for index, features in self._features_by_group(batch):
            encoded = self._encode(features)
            logits = self._teacher_forced(encoded, [rows[i] for i in index])
            labels = padded([rows[i] + [self.eot] for i in index], -100)
            nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none").sum(-1)
            out = out.index_put((torch.tensor(index),), nll)
        return out

    # ------------------------------------------------------------------ Posteriors
    def log_probs(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Token log-posteriors ``(B, L, V)`` along each input's greedy transcript (with end of
        text), differentiable in the samples, and the number of steps ``(B,)``."""
        batch = self._as_batch(batch)
        results: dict[int, torch.Tensor] = {}
        for index, features in self._features_by_group(batch):
            encoded = self._encode(features)
            budget = self._token_budget(int(batch.lengths[index].max()))  # as transcribe's budget
            with torch.no_grad():
                rows = self._greedy(encoded.detach(), budget)
            logits = self._suppressed(self._teacher_forced(encoded, rows))
            log_probs = logits.log_softmax(-1)
            for k, i in enumerate(index):
                # a row cut at the budget has no end of text: no step after its last token
                results[i] = log_probs[k, : min(len(rows[k]) + 1, budget)]
        lengths = torch.tensor([len(results[i]) for i in range(len(batch))])
        return pad_steps([results[i] for i in range(len(batch))]), lengths

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Transcripts from ``(B, L, V)`` token log-posteriors (argmax per step, up to end of text)."""
        texts = []
        for row, n in zip(log_probs.argmax(-1).tolist(), lengths.tolist()):
            row = row[: int(n)]
            texts.append(self._text(row[: row.index(self.eot)] if self.eot in row else row))
        return texts

    # ------------------------------------------------------------------ Stochastic
    @contextlib.contextmanager
    def stochastic(self, p: float | None = None, *, seed: int) -> Iterator["WhisperRecognizer"]:
        """Dropout at rate ``p`` at :attr:`dropout_sites`; weights untouched, masks seeded by ``seed`` (required)."""
        seed = require_seed(seed, "WhisperRecognizer.stochastic()")
        p = self.default_p if p is None else float(p)
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
        previous = self._dropout.draw
        generator = torch.Generator().manual_seed(seed)
        self._dropout.draw = (p, generator) if p > 0 else None
        try:
            yield self
        finally:
            self._dropout.draw = previous

    def realizations(self, audio, n: int = 50, seed: int = 0, *, p: float | None = None) -> Realizations:
        """``n`` dropout realisations of one waveform in one batch.

        Transcripts come from free-running greedy decoding under dropout. The posteriors are
        aligned across realisations (the token-level analogue of the CTC model's frames): each
        realisation's decoder, under its dropout, is teacher-forced on the medoid transcript (the
        realisation closest to all others in normalised edit distance), and its distribution at
        every step is kept over the :attr:`posterior_classes` tokens most probable on average plus
        one class for the rest. So ``log_probs`` is ``(n, L, K + 1)`` with ``L`` the medoid's
        tokens plus end of text, and posterior measures (entropy, MI, variance, KL) apply as they do
        to CTC frames.
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        waveform = torch.from_numpy(validate_waveform(audio, self.sample_rate, name="audio"))
        batch = AudioBatch(waveform[None], torch.tensor([len(waveform)]), self.sample_rate)
        p = self.default_p if p is None else float(p)
        budget = self._token_budget(len(waveform))
        shared = self.dropout_sites == "decoder"
        with torch.no_grad():
            (_, features), = self._features_by_group(batch)
            with self.stochastic(p, seed=seed):
                encoded = self._encode_clean(features) if shared else self._encode(features.expand(n, -1, -1))
                rows = self._greedy(encoded, budget, rows=n if shared else None)
            texts = [self._text(r) for r in rows]
            centre = rows[medoid_index([self.normalize_text(t) for t in texts])]
            with self.stochastic(p, seed=derive(seed, "whisper-teacher-forced")):
                # as log_probs: the medoid's steps and its end of text, within the token budget
                logits = self._teacher_forced(encoded, [centre] * n, shared=shared)[:, :budget]
            log_probs = top_classes(self._suppressed(logits).log_softmax(-1), self.posterior_classes)
        return Realizations(texts, log_probs, log_probs.shape[1], p, int(seed))

    def realization_scheme(self, precision: str = "auto") -> str:
        return f"whisper-dropout-{self.dropout_sites}-medoid-top{self.posterior_classes}-v2"

    # ------------------------------------------------------------------ internals
    def _as_batch(self, batch) -> AudioBatch:
        if not isinstance(batch, AudioBatch):
            batch = AudioBatch.from_waveforms(batch, self.sample_rate)
        if batch.sample_rate != self.sample_rate:
            raise InvalidAudioError(f"batch is at {batch.sample_rate} Hz but Whisper expects {self.sample_rate} Hz; "
                                    "resample with asrguard.audio.resample")
        return batch

    def _token_budget(self, n_samples: int) -> int:
        return min(MAX_NEW_TOKENS, 16 + math.ceil(8 * n_samples / self.sample_rate))

    def _features_by_group(self, batch: AudioBatch) -> list[tuple[list[int], torch.Tensor]]:
        """``(indices, log-mel)`` per group of utterances that run together (see the module doc)."""
        waveforms = batch.waveforms * batch.mask()  # padding stays silent whatever an attack adds
        if self.window == "30s":
            if int(batch.lengths.max()) > WINDOW_SAMPLES:
                raise InvalidAudioError("Whisper's 30 s window: audio over 30 s; cut it into segments first")
            return [(list(range(len(batch))), log_mel(waveforms, self.mel_filters, WINDOW_SAMPLES))]
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(batch.lengths.tolist()):
            groups.setdefault(int(n), []).append(i)
        out = []
        for n, index in groups.items():
            if n > WINDOW_SAMPLES:
                raise InvalidAudioError(f"audio of {n / self.sample_rate:.1f} s is over Whisper's 30 s; "
                                        "cut it into segments first")
            n_samples = max(HOP * 2, n - n % HOP)
            out.append((index, log_mel(waveforms[index, :n], self.mel_filters, n_samples)))
        return out

    def _encode(self, features: torch.Tensor) -> torch.Tensor:
        """The encoder on ``(B, 80, T)`` features, positions sliced to its ``ceil(T / 2)`` steps."""
        encoder = self.model.model.encoder
        x = F.gelu(encoder.conv1(features))
        x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > encoder.embed_positions.num_embeddings:
            raise InvalidAudioError("audio is over Whisper's 30 s window")
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        for layer in encoder.layers:
            x = layer(x, None)
        return encoder.layer_norm(x)

    def _encode_clean(self, features: torch.Tensor) -> torch.Tensor:
        draw, self._dropout.draw = self._dropout.draw, None
        try:
            return self._encode(features)
        finally:
            self._dropout.draw = draw

    def _greedy_all(self, batch: AudioBatch) -> list[list[int]]:
        rows: dict[int, list[int]] = {}
        for index, features in self._features_by_group(batch):
            budget = self._token_budget(int(batch.lengths[index].max()))
            for i, row in zip(index, self._greedy(self._encode(features), budget)):
                rows[i] = row
        return [rows[i] for i in range(len(batch))]

    def _greedy(self, encoded: torch.Tensor, budget: int, *, rows: int | None = None) -> list[list[int]]:
        """Greedy tokens per row (without end of text), with a key-value cache.

        ``rows`` decodes that many rows against one encoder output ``(1, S, D)``: its
        cross-attention keys and values are computed once and shared (dropout never touches
        them). Rows leave the batch when they end, so one long row does not keep all busy.
        """
        decoder = self.model.model.decoder
        shared = rows is not None
        size = int(rows) if shared else encoded.shape[0]
        cache = shared_cross_cache(decoder, encoded, size) if shared else None
        context = encoded.expand(size, -1, -1) if shared else encoded
        active = torch.arange(size)
        inputs = torch.tensor([self.prompt] * size)
        tokens = torch.full((size, budget), self.eot, dtype=torch.long)
        for step in range(budget):
            out = decoder(input_ids=inputs, encoder_hidden_states=context, cache=cache, use_cache=True)
            cache = out.cache
            logits = self._suppressed(self.model.proj_out(out.last_hidden_state[:, -1:]), first=step == 0)[:, 0]
            token = logits.argmax(-1)
            tokens[active, step] = token
            going = token != self.eot
            if not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                active, token = active[keep], token[keep]
                select_rows(cache, keep, shared)
                context = context[:1].expand(len(keep), -1, -1) if shared else context[keep]
            inputs = token[:, None]
        return [row[: row.index(self.eot)] if self.eot in row else row for row in tokens.tolist()]

    def _teacher_forced(self, encoded: torch.Tensor, rows: Sequence[Sequence[int]], *,
                        shared: bool = False) -> torch.Tensor:
        """Logits ``(B, max_len + 1, V)``: the prediction after the prompt and after every token.
        ``shared``: ``encoded`` is one ``(1, S, D)`` output that every row attends to."""
        inputs = padded([self.prompt + list(r) for r in rows], self.eot)
        decoder = self.model.model.decoder
        if shared:
            cache = shared_cross_cache(decoder, encoded, len(rows))
            hidden = decoder(input_ids=inputs, encoder_hidden_states=encoded.expand(len(rows), -1, -1), cache=cache,
                             use_cache=True).last_hidden_state
        else:
            hidden = decoder(input_ids=inputs, encoder_hidden_states=encoded, use_cache=False).last_hidden_state
        return self.model.proj_out(hidden[:, len(self.prompt) - 1:])

    def _suppressed(self, logits: torch.Tensor, *, first: bool | None = None) -> torch.Tensor:
        """Whisper's suppression: special tokens always, blank and end of text at the first step
        (``first=None``: the first of the ``L`` steps in ``(B, L, V)``)."""
        logits = logits.index_fill(-1, self.suppress, SUPPRESSED)
        if first is None:
            begin = torch.zeros_like(logits[0:1])
            begin[:, 0, self.suppress_begin] = SUPPRESSED
            return torch.where(begin < 0, begin, logits)
        return logits.index_fill(-1, self.suppress_begin, SUPPRESSED) if first else logits

    def _text(self, row: Sequence[int]) -> str:
        return self.tokenizer.decode([t for t in row if t < self.eot], skip_special_tokens=True).strip()
