"""The CTC recogniser behind the Recognizer interface: transcription, loss, dropout
realisations for the detector, and its model folder (safetensors plus JSON with checksums).

:meth:`CTCRecognizer.realizations` has its own gradient-free pass for the detector: the
first dense layer runs once, the 1/(1-p) rescaling is folded into the weights that follow
each dropout, masks come from fast seeded bit streams, cached across calls and lengths
(:func:`~asrguard.asr.ctc.masks.realization_keep_masks`), and on CPUs with native bfloat16
the mask-dependent layers run in bfloat16 (about 1.9x faster here; the rounding is far below
the dropout noise being measured). ``precision="float32"`` opts out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ...audio import validate_waveform
from ...errors import ConfigError, ModelFileError
from ...fileio import atomic_write, atomic_write_text, sha256_file
from ...rng import require_seed
from ...text import CHARACTERS, encode
from ..base import MASK_SCHEMES, AudioBatch, Realizations, Recognizer
from .masks import realization_keep_masks
from .model import CTCConfig, DeepSpeechCTC

FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "assets" / "models" / "ctc_default"


def native_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Example:
        >>> isinstance(native_bfloat16(), bool)
        True
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


REALIZATION_PRECISIONS = ("auto", "float32", "bfloat16")


# ──────────────────────────────────────────────────────────────────────────────
# Decoding
# ──────────────────────────────────────────────────────────────────────────────


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Example:
        >>> lp = torch.log(torch.eye(29)[[0, 9, 9, 0, 10]]).unsqueeze(0)
        >>> greedy_decode(lp, torch.tensor([5]))
        ['hi']
    """
    best = log_probs.argmax(dim=-1).cpu().numpy()
    transcripts = []
    for row, n in zip(best, lengths.tolist()):
        row = row[:n]
        keep = np.ones(len(row), dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        chars = [CHARACTERS[i] for i in row[keep] if i != 0]
        transcripts.append(" ".join("".join(chars).split()))
    return transcripts


# ──────────────────────────────────────────────────────────────────────────────
# The Recognizer
# ──────────────────────────────────────────────────────────────────────────────


class CTCRecognizer(Recognizer):
    """The CTC recogniser behind the Recognizer interface.

    Example:
        >>> rec = CTCRecognizer.load()                      # doctest: +SKIP
        >>> rec.transcribe([waveform])                       # doctest: +SKIP
        ['okay google']
        >>> r = rec.realizations(waveform, n=50, seed=0)     # doctest: +SKIP
    """

    mask_schemes = MASK_SCHEMES  # iid and balanced realisation masks (asrguard.asr.ctc.masks)

    def __init__(self, config: CTCConfig | None = None, model: DeepSpeechCTC | None = None,
                 metadata: dict | None = None):
        self.config = config or CTCConfig()
        self.model = model or DeepSpeechCTC(self.config)
        self.model.eval()
        self.sample_rate = self.config.sample_rate
        self.metadata = metadata or {}
        self.checksum: str | None = None  # of the weights file, once saved or loaded

    # --- Recognizer interface ---------------------------------------------------
    @property
    def vocabulary(self) -> Sequence[str]:
        return CHARACTERS

    def fingerprint(self) -> str | None:
        """SHA-256 over the weights' checksum and the config's: all that decides the outputs; None until saved or loaded.

        ``checksum`` alone covers the weights (the shipped detector is bound to it); a config
        edit is refused on load, and changes this fingerprint should anyone re-hash the config.

        Example:
            >>> CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8)).fingerprint() is None
            True
        """
        if self.checksum is None:
            return None
        described = json.dumps({"weights": self.checksum, "config": config_digest(asdict(self.config))},
                               sort_keys=True)
        return hashlib.sha256(described.encode()).hexdigest()

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """A CTC target needs one output frame per character plus one per doubled letter."""
        with torch.no_grad():
            _, frames = self.log_probs(batch)
        return [bool(t.strip()) and required_frames(t) <= int(n) for t, n in zip(targets, frames.tolist())]

    def log_probs(self, batch: AudioBatch):
        """Log-posteriors ``(B, T', C)`` and frame counts, on the CPU whatever :attr:`device` runs the model."""
        self._check_rate(batch)
        device = self.device
        log_probs, lengths = self.model(batch.waveforms.to(device), batch.lengths.to(device))
        return log_probs.cpu(), lengths.cpu()  # differentiable: gradients flow back to CPU inputs

    @property
    def device(self) -> torch.device:
        return self.model.feature_std.device

    def to(self, device: str | torch.device) -> "CTCRecognizer":
        """Run the network on ``device`` (``"cuda"``); inputs and outputs stay CPU tensors. Returns ``self``.

        Example:
            >>> CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8)).to("cpu").device.type
            'cpu'
        """
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: this PyTorch build sees no CUDA device (torch.cuda.is_available() "
                              "is False)")
        self.model.to(device)
        return self

    def decode(self, log_probs, lengths):
        return greedy_decode(log_probs, lengths)

    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """CTC loss toward ``targets`` (one string per utterance), shape ``(B,)``."""
        if len(targets) != len(batch):
            raise ConfigError(f"{len(targets)} targets for a batch of {len(batch)}")
        log_probs, lengths = self.log_probs(batch)
        encoded = [torch.tensor(encode(t), dtype=torch.long) for t in targets]
        for i, (e, n) in enumerate(zip(encoded, lengths.tolist())):
            needed = len(e) + int((e[1:] == e[:-1]).sum()) if len(e) else 0
            if len(e) == 0 or needed > n:
                raise ConfigError(
                    f"target {targets[i]!r} needs {needed} frames but utterance {i} has {n}; "
                    "use a longer utterance or a shorter target"
                )
        target_lengths = torch.tensor([len(e) for e in encoded])
        return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(encoded), lengths, target_lengths,
                          blank=0, reduction="none", zero_infinity=False)

    @contextlib.contextmanager
    def stochastic(self, p: float | None = None, *, seed: int):
        """Dropout at rate ``p`` (default: the training rate) on every non-LSTM layer.

        Weights are untouched. The masks come from a generator seeded with ``seed`` (required).
        """
        seed = require_seed(seed, "CTCRecognizer.stochastic()")
        p = self.config.dropout if p is None else float(p)
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
        previous = (self.model.inference_p, self.model.generator)
        self.model.inference_p = p
        self.model.generator = torch.Generator().manual_seed(seed)
        try:
            yield self
        finally:
            self.model.inference_p, self.model.generator = previous

    def realizations(self, audio, n: int = 50, seed: int = 0, *, p: float | None = 0.1,
                     precision: str = "auto", masks: str = "iid") -> Realizations:
        """``n`` dropout realisations of one waveform in one batched, gradient-free pass.

        The front end and the first dense layer run once; only the layers after the first
        dropout run ``n`` times. ``precision``: ``"float32"``, ``"bfloat16"``, or ``"auto"``
        (bfloat16 where the CPU has it natively, see :func:`native_bfloat16`). Reproducible
        from ``seed`` (:func:`dropout_keep_masks`); ``masks``: ``"iid"`` or ``"balanced"``
        (:func:`~asrguard.asr.ctc.masks.realization_keep_masks`).
        """
        p = self.config.dropout if p is None else float(p)
        waveform = torch.from_numpy(validate_waveform(audio, self.sample_rate))
        with torch.no_grad():
            log_probs, length = self.realization_log_probs(waveform, n, seed, p=p, precision=precision, masks=masks)
        log_probs = log_probs.cpu()
        transcripts = greedy_decode(log_probs, torch.tensor([length]).expand(n))
        return Realizations(transcripts, log_probs, length, p, seed, masks)

    def realizations_batch(self, audios: Sequence, n: int = 50, seed: int = 0, *, p: float | None = 0.1,
                           precision: str = "auto", masks: str = "iid") -> list[Realizations]:
        """:meth:`realizations` of several waveforms in one pass: one :class:`Realizations` per waveform.

        Each utterance gets the masks it gets alone and the same transcripts; its posteriors
        equal its own pass's up to float rounding. The front end and first layer run per
        utterance (so normalisation and the STFT's edges never see another utterance's padding);
        the mask-dependent layers run once for all ``len(audios) * n`` rows
        (:meth:`~asrguard.asr.ctc.model.DeepSpeechCTC.rest_realizations_batch`), which cuts the
        per-step work of the LSTMs' threads; padding frames are cut off each result.

        Example:
            >>> rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
            >>> short, long = np.full(3200, 0.1, np.float32), np.full(8000, 0.1, np.float32)
            >>> [tuple(r.log_probs.shape) for r in rec.realizations_batch([short, long], n=4, seed=1)]
            [(4, 11, 29), (4, 26, 29)]
        """
        p = self.config.dropout if p is None else float(p)
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if len(audios) == 0:
            raise ConfigError("realizations_batch needs at least one waveform")
        waveforms = [torch.from_numpy(validate_waveform(a, self.sample_rate, name=f"audio[{i}]"))
                     for i, a in enumerate(audios)]
        dtype = self._realization_dtype(precision)
        device = self.device
        with torch.no_grad():
            shared, frames = [], []
            for waveform in waveforms:  # one at a time: the front end then never sees padding
                features, lengths = self.model.features(waveform.to(device)[None],
                                                        torch.tensor([waveform.shape[-1]], device=device))
                shared.append(self.model.first_layer(features)[0])
                frames.append(int(lengths[0]))
            padded = torch.nn.utils.rnn.pad_sequence(shared, batch_first=True)
            kept, keep = realization_keep_masks(padded.shape[1], n, self.model.dropout_widths(), p, seed, dtype, masks)
            log_probs = self.model.rest_realizations_batch(padded, torch.tensor(frames, device=device), kept, keep,
                                                           dtype).cpu()
        drawn = []
        for i, length in enumerate(frames):
            own = log_probs[i, :, :length].contiguous()  # a copy: one result never pins the whole batch
            drawn.append(Realizations(greedy_decode(own, torch.tensor([length]).expand(n)), own, length, p, seed, masks))
        return drawn

    def realization_log_probs(self, waveform: torch.Tensor, n: int = 50, seed: int = 0, *, p: float = 0.1,
                              precision: str = "auto", indices: Sequence[int] | None = None, masks: str = "iid"
                              ) -> tuple[torch.Tensor, int]:
        """Log-posteriors ``(n, T', C)`` and frame count of the realisations :meth:`realizations` draws.

        The same masks as :meth:`realizations` with the same ``n``, ``seed`` and ``p``, and
        differentiable with respect to ``waveform`` (a 1-D tensor at :attr:`sample_rate`) when
        gradients are on: an attacker who knows a detector's seed can optimise against exactly
        its realisations (:class:`asrguard.attacks.adaptive.KnownMaskAttack`). ``indices``
        keeps only those realisations (a subset of the ``n``), for cheaper steps.

        Example:
            >>> rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
            >>> x = torch.full((3200,), 0.1, requires_grad=True)
            >>> log_probs, frames = rec.realization_log_probs(x, 4, seed=1, indices=[0, 2])
            >>> tuple(log_probs.shape), frames
            ((2, 11, 29), 11)
            >>> log_probs.sum().backward(); x.grad.shape
            torch.Size([3200])
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        dtype = self._realization_dtype(precision)
        device = self.model.feature_std.device
        waveform = waveform.to(device)
        features, lengths = self.model.features(waveform[None], torch.tensor([waveform.shape[-1]], device=device))
        shared = self.model.first_layer(features)
        kept, keep = realization_keep_masks(shared.shape[1], n, self.model.dropout_widths(), p, seed, dtype, masks)
        if indices is not None:
            index = torch.as_tensor(list(indices), dtype=torch.long)
            if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= n:
                raise ConfigError(f"indices must name realisations in 0..{n - 1}")
            kept = [k.index_select(1, index) for k in kept]
        return self.model.rest_realizations(shared, kept, keep, dtype).cpu(), int(lengths[0])

    def realization_loss(self, waveform: torch.Tensor, target: str, n: int = 50, seed: int = 0, *, p: float = 0.1,
                         indices: Sequence[int] | None = None, masks: str = "iid") -> torch.Tensor:
        """CTC loss toward ``target`` of each realisation :meth:`realizations` draws (or ``indices`` of them): ``(k,)``.

        Example:
            >>> rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
            >>> rec.realization_loss(torch.full((3200,), 0.1), "hi", 4, seed=1, indices=[0, 2]).shape
            torch.Size([2])
        """
        log_probs, frames = self.realization_log_probs(waveform, n, seed, p=p, indices=indices, masks=masks)
        label = torch.tensor(encode(target), dtype=torch.long)
        k = log_probs.shape[0]
        return F.ctc_loss(log_probs.float().transpose(0, 1), label.repeat(k), torch.full((k,), frames),
                          torch.full((k,), len(label)), blank=0, reduction="none", zero_infinity=True)

    def realization_scheme(self, precision: str = "auto") -> str:
        """How :meth:`realizations` draws here, e.g. ``"pcg64-rows-u16/bfloat16"``.

        Feature caches and saved detectors record it: realisations drawn under another scheme
        are statistically alike but not identical.

        Example:
            >>> CTCRecognizer().realization_scheme("float32")
            'pcg64-rows-u16/float32'
        """
        return f"pcg64-rows-u16/{str(self._realization_dtype(precision)).removeprefix('torch.')}"

    @staticmethod
    def _realization_dtype(precision: str) -> torch.dtype:
        if precision not in REALIZATION_PRECISIONS:
            raise ConfigError(f"precision must be one of {REALIZATION_PRECISIONS}, got {precision!r}")
        use_bf16 = precision == "bfloat16" or (precision == "auto" and native_bfloat16())
        return torch.bfloat16 if use_bf16 else torch.float32

    # --- persistence ------------------------------------------------------------
    def save(self, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (with version and checksum) atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / "model.safetensors"
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        atomic_write(weights, lambda tmp: save_file(state, tmp))
        self.checksum = sha256_file(weights)
        document = {
            "format": "asrguard-ctc", "version": FORMAT_VERSION, "config": asdict(self.config),
            "config_sha256": config_digest(asdict(self.config)),
            "checksum_sha256": self.checksum, "metadata": {**self.metadata, **(metadata or {})},
        }
        atomic_write_text(directory / "config.json", json.dumps(document, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike | None = None) -> "CTCRecognizer":
        """Load a saved model, verifying its checksum; ``None`` loads the shipped default."""
        directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
        config_path, weights = directory / "config.json", directory / "model.safetensors"
        if not config_path.exists() or not weights.exists():
            raise ModelFileError(f"{directory}: expected config.json and model.safetensors; "
                                 "train one with `asrguard train` or pass --model")
        try:
            document = json.loads(config_path.read_text())
            config = CTCConfig(**document["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{config_path}: not a valid asrguard CTC config ({exc})") from None
        if document.get("format") != "asrguard-ctc" or document.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{config_path}: unsupported format/version")
        # the config changes the model's output (clipping, filterbank, ...): an edit is refused like a weight edit,
        # and a config without its checksum too (else deleting the line would let any edit through)
        if "config_sha256" not in document:
            raise ModelFileError(f"{config_path}: no config_sha256, so an edit of the model config could not be "
                                 "detected; restore the original config.json or retrain")
        if document["config_sha256"] != config_digest(document["config"]):
            raise ModelFileError(f"{config_path}: the model config was modified (config_sha256 mismatch); restore it "
                                 "or retrain")
        checksum = sha256_file(weights)
        if checksum != document.get("checksum_sha256"):
            raise ModelFileError(f"{weights}: checksum mismatch; the file was modified or is corrupt")
        model = DeepSpeechCTC(config)
        try:
            model.load_state_dict(load_file(str(weights)))
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{weights}: weights do not match the config ({exc})") from None
        recognizer = cls(config, model, document.get("metadata", {}))
        recognizer.checksum = checksum
        return recognizer

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def config_digest(config: dict) -> str:
    """SHA-256 of a model config in canonical JSON (sorted keys), stored beside the weights' checksum.

    Example:
        >>> config_digest({"b": 1, "a": 2}) == config_digest({"a": 2, "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def required_frames(target: str) -> int:
    """Frames CTC needs to emit ``target``: its length plus one blank per doubled letter."""
    e = encode(target)
    return len(e) + sum(a == b for a, b in zip(e, e[1:]))


def seconds_for_target(target: str, config: CTCConfig | None = None) -> float:
    config = config or CTCConfig()
    return required_frames(target) * config.stride * config.hop_length / config.sample_rate
