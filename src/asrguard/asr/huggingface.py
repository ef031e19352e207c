"""Hugging Face CTC models (wav2vec 2.0, HuBERT, anything ``AutoModelForCTC`` loads) as asrguard recognisers.

    waveform ─► zero padding ─► per-utterance zero-mean unit-variance (if the feature extractor does it)
             ─► model(input_values, attention_mask) ─► log-softmax ─► greedy CTC (blank = pad token)

Everything is differentiable in the samples, so every asrguard attack runs against the model,
and the normalisation is computed over each utterance's true length only, so padding never
reaches the statistics or receives gradient.

Inference-time randomness (:meth:`HFCTCRecognizer.stochastic`) is dropout injected by forward
hooks on the outputs of the attention and feed-forward blocks of every encoder layer, with
masks from a seeded ``torch.Generator``. The model stays in eval mode (its own dropout,
LayerDrop and SpecAugment stay off) and its weights are never touched.

Needs ``transformers`` (``pip install transformers``); weights load from safetensors only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import validate_waveform
from ..errors import ConfigError, InvalidAudioError, ModelFileError
from ..rng import require_seed
from ..text import lower_single_spaced
from .base import AudioBatch, Realizations, Recognizer

#: The feature extractor's variance floor (``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``).
NORMALIZE_EPS = 1e-7

#: Encoder sub-blocks whose outputs get inference-time dropout: ``encoder.layers.N.<block>``
#: (wav2vec 2.0, HuBERT, WavLM, Data2VecAudio, UniSpeech use attention / feed_forward; the
#: Conformer variant uses self_attn / ffn1 / ffn2).
#: Config entries that record where a model came from, not how it computes (the state dict carries dtypes).
_BOOKKEEPING = {"transformers_version", "_name_or_path", "_commit_hash", "_attn_implementation_autoset",
                "_attn_implementation_internal", "torch_dtype", "dtype"}
_DROPOUT_SITES = re.compile(r"(^|\.)encoder\.layers\.\d+\.(attention|feed_forward|self_attn|ffn\d*)$")


class HFCTCRecognizer(Recognizer):
    """A Hugging Face CTC model and its tokenizer behind the Recognizer interface.

    Parameters:
        model: a ``transformers`` CTC model (``Wav2Vec2ForCTC``, ``HubertForCTC``, ...). It is put
            in eval mode.
        tokenizer: its ``Wav2Vec2CTCTokenizer``, or a processor holding the tokenizer and the
            feature extractor.
        sample_rate: the rate the model was trained at.
        feature_extractor: optional ``Wav2Vec2FeatureExtractor``; decides ``do_normalize`` and
            whether an attention mask is passed. Without one: normalise, and pass a mask when
            ``config.feat_extract_norm == "layer"`` (the models trained with masks).

    Transcripts are lowercased with single spaces (the form asrguard compares everywhere);
    targets are matched to the vocabulary's case.

    Example:
        >>> rec = HFCTCRecognizer.from_pretrained("facebook/wav2vec2-base-960h")  # doctest: +SKIP
        >>> rec.transcribe([waveform])                                             # doctest: +SKIP
        ['okay google']
        >>> rec.realizations(waveform, n=50, seed=0).log_probs.shape               # doctest: +SKIP
        torch.Size([50, 49, 32])
    """

    def __init__(self, model, tokenizer, sample_rate: int = 16000, *, feature_extractor=None):
        if hasattr(tokenizer, "tokenizer") and hasattr(tokenizer, "feature_extractor"):  # a processor
            feature_extractor = feature_extractor if feature_extractor is not None else tokenizer.feature_extractor
            tokenizer = tokenizer.tokenizer
        if tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token, which CTC models use as the blank")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.sample_rate = int(sample_rate)
        config = model.config
        if feature_extractor is not None:
            self.do_normalize = bool(getattr(feature_extractor, "do_normalize", True))
            self.use_attention_mask = bool(getattr(feature_extractor, "return_attention_mask", False))
            rate = getattr(feature_extractor, "sampling_rate", None)
            if rate is not None and int(rate) != self.sample_rate:
                raise ConfigError(f"sample_rate {self.sample_rate} differs from the feature extractor's {rate}")
        else:
            self.do_normalize = True
            self.use_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"
        self.blank = int(tokenizer.pad_token_id)
        # only the model's outputs count: tokenizers add <s>, </s> past them that CTC never emits
        vocab = {t: i for t, i in tokenizer.get_vocab().items() if i < int(config.vocab_size)}
        self._tokens: list[str | None] = [None] * int(config.vocab_size)
        for token, index in vocab.items():
            self._tokens[index] = token
        self._vocab = set(vocab)
        self.delimiter = getattr(tokenizer, "word_delimiter_token", None) or "|"
        # tokens that never belong in a transcript (pad = blank, unk, bos, eos)
        self._silent = {t for t in (tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token,
                                    tokenizer.eos_token) if t is not None}
        letters = [t for t in vocab if len(t) == 1 and t.isalpha()]
        self.uppercase = bool(letters) and all(t.isupper() for t in letters)
        self.default_p = float(getattr(config, "hidden_dropout", 0.0) or 0.1)
        self._hooks: list = []
        self._inference_p: float | None = None
        self._generator: torch.Generator | None = None
        self._checksum: str | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, local_files_only: bool = False, revision: str | None = None,
                        sample_rate: int | None = None, device: str | torch.device | None = None,
                        **model_kwargs) -> "HFCTCRecognizer":
        """Load model, tokenizer and (if present) feature extractor from the Hub or a local folder.

        Weights are read from safetensors only (``use_safetensors=True``: a pickled checkpoint is
        refused, never unpickled). ``local_files_only=True`` never touches the network.

        Example:
            >>> rec = HFCTCRecognizer.from_pretrained("facebook/hubert-large-ls960-ft")  # doctest: +SKIP
            >>> rec = HFCTCRecognizer.from_pretrained("./my-model", local_files_only=True)  # doctest: +SKIP
        """
        # imported here: transformers is an optional dependency, slow to import
        from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer

        common = {"local_files_only": local_files_only, "revision": revision}
        try:
            model = AutoModelForCTC.from_pretrained(name_or_path, use_safetensors=True, **common, **model_kwargs)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **common)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{name_or_path}: cannot load a CTC model and tokenizer with safetensors "
                                 f"weights ({exc})") from None
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **common)
        except (OSError, ValueError):
            feature_extractor = None  # optional: the model config decides normalisation and masks
        if sample_rate is None:
            sample_rate = int(getattr(feature_extractor, "sampling_rate", None) or 16000)
        if device is not None:
            model = model.to(device)
        recognizer = cls(model, tokenizer, sample_rate, feature_extractor=feature_extractor)
        recognizer.name_or_path = str(name_or_path)
        return recognizer

    # --- posteriors ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocabulary(self) -> Sequence[str]:
        """Tokens in output-index order; the blank (pad token) is at :attr:`blank`."""
        return [t if t is not None else "" for t in self._tokens]

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for inputs of ``sample_lengths`` samples (the conv stack's arithmetic)."""
        return self.model._get_feat_extract_output_lengths(sample_lengths.cpu()).to(torch.long)

    def log_probs(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-posteriors ``(B, T, C)`` and frame lengths ``(B,)``; differentiable in the samples."""
        self._check_rate(batch)
        device = self.device
        mask = batch.mask().to(device)
        x = batch.waveforms.to(device) * mask  # padding can never reach the model or take gradient
        if self.do_normalize:
            n = batch.lengths.to(device).clamp(min=1)[:, None].to(x.dtype)
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean) * mask).square().sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + NORMALIZE_EPS) * mask
        attention_mask = mask.to(torch.long) if self.use_attention_mask else None
        logits = self.model(x, attention_mask=attention_mask).logits
        frames = self.frame_lengths(batch.lengths).clamp(max=logits.shape[1])
        return F.log_softmax(logits.float(), dim=-1), frames

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy CTC: argmax per frame, merge repeats, drop blanks; the word delimiter is a space."""
        best = log_probs.argmax(dim=-1).cpu().numpy()
        transcripts = []
        for row, n in zip(best, lengths.tolist()):
            row = row[: int(n)]
            keep = np.ones(len(row), dtype=bool)
            keep[1:] = row[1:] != row[:-1]
            pieces = []
            for index in row[keep]:
                token = self._tokens[index] if index < len(self._tokens) else None
                if index == self.blank or token is None or token in self._silent:
                    continue
                pieces.append(" " if token == self.delimiter else token)
            transcripts.append(self.normalize_text("".join(pieces)))
        return transcripts

    @staticmethod
    def normalize_text(text: str) -> str:
        """Lowercase with single spaces (:func:`asrguard.text.lower_single_spaced`)."""
        return lower_single_spaced(text)

    # --- loss ------------------------------------------------------------------------
    def encode(self, target: str) -> list[int]:
        """Token ids of ``target`` (matched to the vocabulary's case); ConfigError for unknown characters."""
        text = " ".join(target.split())
        if not text:
            raise ConfigError("empty target")
        text = text.upper() if self.uppercase else text
        missing = sorted({c for c in text if (self.delimiter if c == " " else c) not in self._vocab})
        if missing:
            raise ConfigError(f"target {target!r} has characters the model's vocabulary lacks: {missing}")
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if self.tokenizer.unk_token_id is not None and self.tokenizer.unk_token_id in ids:
            raise ConfigError(f"target {target!r} does not tokenise without unknown tokens")
        return list(ids)

    @staticmethod
    def _needed(ids: Sequence[int]) -> int:
        # CTC needs a blank between two equal labels
        return len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """Whether each target's labels (plus one frame per repeated label) fit its frames."""
        frames = self.frame_lengths(batch.lengths).tolist()
        fits = []
        for target, n in zip(targets, frames):
            try:
                fits.append(self._needed(self.encode(target)) <= int(n))
            except ConfigError:
                fits.append(False)
        return fits

    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """CTC loss toward ``targets`` (one string per utterance), shape ``(B,)``."""
        if len(targets) != len(batch):
            raise ConfigError(f"{len(targets)} targets for a batch of {len(batch)}")
        encoded = [self.encode(t) for t in targets]
        log_probs, lengths = self.log_probs(batch)
        for i, (ids, n) in enumerate(zip(encoded, lengths.tolist())):
            if self._needed(ids) > n:
                raise ConfigError(f"target {targets[i]!r} needs {self._needed(ids)} frames but utterance {i} "
                                  f"has {n}; use a longer utterance or a shorter target")
        flat = torch.tensor([i for ids in encoded for i in ids], dtype=torch.long, device=log_probs.device)
        target_lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.long)
        return F.ctc_loss(log_probs.transpose(0, 1), flat, lengths, target_lengths, blank=self.blank,
                          reduction="none", zero_infinity=False)

    # --- weights ---------------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 over all that decides the outputs, computed once: the state dict (names, dtypes,
        shapes and bytes), the model config (norms, strides, activations, ...), the input
        normalisation and masking, the sample rate and the vocabulary. An edited ``config.json``
        (or tokenizer, or feature extractor) changes it, so a detector bound to it refuses the model."""
        if self._checksum is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                t = tensor.detach().cpu().contiguous()
                digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            config = {k: v for k, v in self.model.config.to_dict().items() if k not in _BOOKKEEPING}
            settings = {"config": config, "do_normalize": self.do_normalize, "attention_mask": self.use_attention_mask,
                        "sample_rate": self.sample_rate, "blank": self.blank, "tokens": self._tokens}
            digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
            self._checksum = digest.hexdigest()
        return self._checksum

    @property
    def checksum(self) -> str:
        """The :meth:`fingerprint`, under the name saved detectors bind to."""
        return self.fingerprint()

    # --- randomness ------------------------------------------------------------------
    def _dropout_sites(self) -> list[torch.nn.Module]:
        sites = [m for name, m in self.model.named_modules() if _DROPOUT_SITES.search(name)]
        if not sites:
            raise ConfigError(f"{type(self.model).__name__}: no encoder attention / feed-forward blocks found "
                              "to inject dropout into")
        return sites

    def _drop(self, module, inputs, output):
        p = self._inference_p
        if not p:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        keep = torch.rand(hidden.shape, generator=self._generator, device=hidden.device, dtype=hidden.dtype) >= p
        hidden = hidden * keep / (1.0 - p)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    @contextlib.contextmanager
    def stochastic(self, p: float | None = None, *, seed: int):
        """Dropout at rate ``p`` on every encoder layer's attention and feed-forward outputs.

        ``p=None`` takes the model's ``hidden_dropout`` (0.1 when that is 0). The model stays in
        eval mode and its weights are untouched; the masks come from a generator seeded with
        ``seed`` (required), so a pass is reproducible.

        Example:
            >>> with rec.stochastic(0.1, seed=0):      # doctest: +SKIP
            ...     noisy = rec.log_probs(batch)
        """
        seed = require_seed(seed, "HFCTCRecognizer.stochastic()")
        p = self.default_p if p is None else float(p)
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
        previous = (self._inference_p, self._generator)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        added = []
        if not self._hooks:  # outermost context: hooks stay registered only while inside one
            added = [m.register_forward_hook(self._drop) for m in self._dropout_sites()]
            self._hooks = added
        self._inference_p, self._generator = p, generator
        try:
            yield self
        finally:
            self._inference_p, self._generator = previous
            for handle in added:
                handle.remove()
            if added:
                self._hooks = []

    def realizations(self, audio, n: int = 50, seed: int = 0, *, p: float | None = None) -> Realizations:
        """``n`` dropout realisations of one waveform in one batched, gradient-free pass.

        The waveform is repeated ``n`` times and the masks are drawn for all rows at once from
        a generator seeded with ``seed``, so the result depends only on ``(audio, n, seed, p)``.

        Example:
            >>> r = rec.realizations(waveform, n=20, seed=0, p=0.1)   # doctest: +SKIP
            >>> len(r.transcripts), r.log_probs.shape[0]               # doctest: +SKIP
            (20, 20)
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        p = self.default_p if p is None else float(p)
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        waveform = torch.from_numpy(validate_waveform(audio, self.sample_rate))
        if waveform.ndim != 1:
            raise InvalidAudioError("realizations takes one waveform")
        batch = AudioBatch(waveform[None].expand(n, -1).contiguous(), torch.full((n,), waveform.shape[0]),
                           self.sample_rate)
        with torch.no_grad(), self.stochastic(p, seed=seed):
            log_probs, lengths = self.log_probs(batch)
        return Realizations(self.decode(log_probs, lengths), log_probs, int(lengths[0]), p, seed)

    def realization_scheme(self, precision: str = "auto") -> str:
        """How :meth:`realizations` draws: ``torch.rand`` masks on the encoder blocks, float32."""
        return "hf-encoder-hooks-torch-rand/float32"

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


__all__ = ["HFCTCRecognizer"]
