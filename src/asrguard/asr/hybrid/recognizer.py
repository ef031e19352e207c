"""The hybrid DNN-HMM digit recogniser behind the :class:`~asrguard.asr.base.Recognizer` interface.

Pipeline: waveform (16 kHz, [-1, 1]) -> peak normalisation ``x / max|x|`` -> 13 MFCCs
(25 ms Hann window, 12.5 ms hop, 128 HTK mel filters, 80 dB floor) -> deltas and
delta-deltas (window 5) -> +-4 frames of context = 351 inputs -> acoustic model (95 state
posteriors) -> scaled likelihoods -> Viterbi over the digit-loop HMM.

Padding: in a batch, frames beyond an utterance's length are replaced by copies of its last
valid frame before deltas and context stacking, so every utterance gets exactly the features
it would get alone.

Randomness: outside :meth:`HybridRecognizer.stochastic`, :meth:`log_probs` is the model's
mean prediction - the ``inference_draws`` average for MC dropout / ensemble / BNN, drawn from
a fixed seed so that it is deterministic - and the plain output for the fNN. Inside, every
call draws one fresh realisation (dropout mask, ensemble member or weight sample) from the
context's generator.

Checkpoints: ``model.safetensors`` (acoustic weights plus ``hmm.*`` tensors) and
``config.json`` (format, version, the sha256 of the safetensors file, model and HMM settings).
Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ...errors import ConfigError, ModelFileError
from ...fileio import atomic_write, atomic_write_text, sha256_file
from ...rng import require_seed
from ...frontend import deltas, mfcc, n_frames, stack_context
from ...text import normalize_transcript
from ..base import AudioBatch, Realizations, Recognizer
from .acoustic import AcousticModel, acoustic_from_config
from .hmm import DigitHMM
from .topology import AlignmentError

FORMAT = "asrguard-hybrid"
VERSION = 1
IGNORE_INDEX = -100

FRONTEND_DEFAULTS = {"n_mfcc": 13, "n_mels": 128, "n_fft": 400, "hop_length": 200, "top_db": 80.0,
                     "deltas": 2, "delta_window": 5, "context": 4, "peak_normalize": True,
                     "cmn": False}


class HybridRecognizer(Recognizer):
    """DNN-HMM recogniser for connected digits; any of the four acoustic model kinds.

    Example:
        >>> from asrguard.asr.hybrid.acoustic import build_acoustic_model
        >>> rec = HybridRecognizer(build_acoustic_model("fnn"), DigitHMM.default())
        >>> lp, lengths = rec.log_probs(AudioBatch.from_waveforms([np.zeros(16000)], 16000))
        >>> tuple(lp.shape), lengths.tolist()
        ((1, 81, 95), [81])
    """

    sample_rate = 16000

    def __init__(self, acoustic: AcousticModel, hmm: DigitHMM | None = None, *, frontend: dict | None = None,
                 inference_seed: int = 0):
        self.acoustic = acoustic.eval()
        self.hmm = hmm or DigitHMM.default()
        if self.hmm.n_states != acoustic.n_states:
            raise ConfigError(f"HMM has {self.hmm.n_states} states but the acoustic model outputs {acoustic.n_states}")
        self.frontend = {**FRONTEND_DEFAULTS, **(frontend or {})}
        dims = self.frontend["n_mfcc"] * (1 + self.frontend["deltas"]) * (2 * self.frontend["context"] + 1)
        if dims != acoustic.input_dim:
            raise ConfigError(f"front end gives {dims} features but the acoustic model expects {acoustic.input_dim}")
        self.inference_seed = int(inference_seed)
        self._draw: tuple[float | None, torch.Generator] | None = None

    @property
    def kind(self) -> str:
        return self.acoustic.kind

    # ------------------------------------------------------------------ features
    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return n_frames(torch.as_tensor(lengths), self.frontend["hop_length"])

    def base_features(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """MFCCs with deltas ``(B, T, 39)`` (before context), edge-replicated past each length."""
        self._check_rate(batch)
        f = self.frontend
        x = batch.waveforms
        if f["peak_normalize"]:
            peak = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
            x = x / peak
        feats = mfcc(x, self.sample_rate, n_mfcc=f["n_mfcc"], n_mels=f["n_mels"], n_fft=f["n_fft"],
                     hop_length=f["hop_length"], top_db=f["top_db"])
        lengths = self.frame_lengths(batch.lengths).to(torch.long)
        if f.get("cmn"):  # per-utterance cepstral mean normalisation over the valid frames
            valid = (torch.arange(feats.shape[1])[None, :] < lengths[:, None]).to(feats.dtype)[..., None]
            feats = feats - (feats * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
        feats = _replicate_tail(feats, lengths)
        parts = [feats]
        for _ in range(f["deltas"]):  # replicate after every order, as a lone utterance would see
            parts.append(_replicate_tail(deltas(parts[-1], f["delta_window"]), lengths))
        return torch.cat(parts, dim=-1), lengths

    def features(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Acoustic model inputs ``(B, T, 351)`` and frame lengths ``(B,)``; differentiable."""
        feats, lengths = self.base_features(batch)
        c = self.frontend["context"]
        return (stack_context(feats, c, c) if c else feats), lengths

    # ------------------------------------------------------------------ Recognizer API
    @property
    def vocabulary(self) -> Sequence[str]:
        """One name per HMM state (``word/state``), the classes :meth:`log_probs` scores."""
        return tuple(f"state{i}" for i in range(self.hmm.n_states))

    def log_probs(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """State log-posteriors ``(B, T, 95)``: one draw inside :meth:`stochastic`, else the mean prediction."""
        feats, lengths = self.features(batch)
        if self._draw is not None:
            p, generator = self._draw
            if self.kind == "fnn" and p is None:
                return self.acoustic.deterministic(feats), lengths
            return self.acoustic.draws(feats, 1, generator, p=p)[0], lengths
        generator = torch.Generator().manual_seed(self.inference_seed)
        return self.acoustic.predict(feats, generator=generator), lengths

    def loss(self, batch: AudioBatch, targets) -> torch.Tensor:
        """Frame cross-entropy toward state targets, averaged over valid frames: ``(B,)``.

        ``targets`` may be

        * a ``LongTensor (B, T')`` of state ids, padded with ``-100`` (frames beyond ``T'`` or
          marked ``-100`` are ignored);
        * a list of 1-D state-id sequences (tensors or arrays), one per utterance, each as long
          as that utterance's frame count (e.g. from :meth:`align`);
        * a list of transcripts, which are force-aligned onto the audio *as given* first
          (an attack should instead align onto the original audio once, see :meth:`align`).
        """
        log_probs, lengths = self.log_probs(batch)
        target = self._target_tensor(batch, targets, lengths, log_probs.shape[1])
        b, t, c = log_probs.shape
        nll = F.nll_loss(log_probs.reshape(b * t, c), target.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction="none").reshape(b, t)
        counts = (target != IGNORE_INDEX).sum(dim=1).clamp_min(1)
        return nll.sum(dim=1) / counts

    def _target_tensor(self, batch, targets, lengths, t_max) -> torch.Tensor:
        b = len(batch)
        if isinstance(targets, torch.Tensor):
            if targets.ndim != 2 or targets.shape[0] != b:
                raise ConfigError(f"state targets must be (B={b}, T), got {tuple(targets.shape)}")
            out = torch.full((b, t_max), IGNORE_INDEX, dtype=torch.long)
            k = min(t_max, targets.shape[1])
            out[:, :k] = targets[:, :k].long()
        else:
            targets = list(targets)
            if len(targets) != b:
                raise ConfigError(f"{len(targets)} targets for a batch of {b}")
            if all(isinstance(x, str) for x in targets):
                targets = self.align(batch, targets)
            out = torch.full((b, t_max), IGNORE_INDEX, dtype=torch.long)
            for i, seq in enumerate(targets):
                seq = torch.as_tensor(np.asarray(seq), dtype=torch.long)
                if seq.ndim != 1 or len(seq) != int(lengths[i]):
                    raise ConfigError(
                        f"state targets for utterance {i} have {len(seq)} frames; it has {int(lengths[i])}"
                    )
                out[i, : len(seq)] = seq
        valid = torch.arange(t_max)[None, :] < lengths[:, None]
        out = torch.where(valid, out, torch.full_like(out, IGNORE_INDEX))
        bad = (out != IGNORE_INDEX) & ((out < 0) | (out >= self.hmm.n_states))
        if bad.any():
            raise ConfigError(f"state targets must be in 0..{self.hmm.n_states - 1} or {IGNORE_INDEX}")
        return out

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Viterbi transcripts (space-separated digit words) from log-posteriors."""
        return self.hmm.decode(log_probs, lengths)

    def align(self, batch: AudioBatch | Sequence, transcripts: Sequence[str], *,
              optional_sil: bool = True) -> list[np.ndarray]:
        """Forced alignment of each transcript onto the (deterministic) posteriors of the audio.

        Returns one ``(T_b,)`` state-id array per utterance. When an utterance has too few
        frames for its transcript, the words are spread evenly over the frames instead
        (each word gets an equal share; see :meth:`DigitHMM.linear_alignment`).
        """
        if not isinstance(batch, AudioBatch):
            batch = AudioBatch.from_waveforms(batch, self.sample_rate)
        if len(transcripts) != len(batch):
            raise ConfigError(f"{len(transcripts)} transcripts for a batch of {len(batch)}")
        with torch.no_grad(), self._deterministic():
            log_probs, lengths = self.log_probs(batch)
        emissions = self.hmm.scaled_likelihoods(log_probs.double())
        out = []
        for i, text in enumerate(transcripts):
            words = normalize_transcript(text).split()
            n = int(lengths[i])
            try:
                out.append(self.hmm.align(emissions[i, :n], words))
            except AlignmentError:
                if not words:
                    raise
                edges = np.linspace(1, n, len(words) + 1)
                spans = [(w, edges[k], edges[k + 1]) for k, w in enumerate(words)]
                out.append(self.hmm.linear_alignment(n, spans))
        return out

    @contextlib.contextmanager
    def _deterministic(self) -> Iterator[None]:
        saved, self._draw = self._draw, None
        try:
            yield
        finally:
            self._draw = saved

    @contextlib.contextmanager
    def stochastic(self, p: float | None = None, *, seed: int) -> Iterator["HybridRecognizer"]:
        """Inside, each :meth:`log_probs` call is one fresh draw (mask / member / weight sample).

        ``p`` sets a dropout rate (for the fNN and dropout models; ``None`` keeps the model's
        own rate, and means no randomness for the fNN). The draws are reproducible from ``seed``
        (required: there is no unseeded draw).
        """
        seed = require_seed(seed, "HybridRecognizer.stochastic()")
        if p is not None and not 0.0 <= float(p) < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
        generator = torch.Generator().manual_seed(seed)
        saved, self._draw = self._draw, (None if p is None else float(p), generator)
        try:
            yield self
        finally:
            self._draw = saved

    def draws(self, batch: AudioBatch, n: int, seed: int = 0, *, p: float | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` realisations of the whole batch in one pass: log-posteriors ``(n, B, T, C)``, lengths."""
        if not isinstance(batch, AudioBatch):
            batch = AudioBatch.from_waveforms(batch, self.sample_rate)
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            feats, lengths = self.features(batch)
            if self.kind == "fnn" and p is None:
                lp = self.acoustic.deterministic(feats).unsqueeze(0).expand(n, *feats.shape[:-1], -1)
            else:
                lp = self.acoustic.draws(feats, n, generator, p=p)
        return lp, lengths

    def realizations(self, audio, n: int, seed: int = 0, *, p: float | None = None) -> Realizations:
        """``n`` stochastic transcripts and posteriors ``(n, T, C)`` of one waveform (one batched pass)."""
        batch = audio if isinstance(audio, AudioBatch) else AudioBatch.from_waveforms([audio], self.sample_rate)
        if len(batch) != 1:
            raise ConfigError("realizations takes one waveform; call draws() for a batch")
        lp, lengths = self.draws(batch, n, seed, p=p)
        lp = lp[:, 0]
        length = int(lengths[0])
        transcripts = self.decode(lp, torch.full((n,), length))
        return Realizations(transcripts, lp[:, :length], length, p, int(seed))

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"acoustic.{k}": v.detach().cpu().contiguous() for k, v in self.acoustic.state_dict().items()}
        tensors.update({f"hmm.{k}": v.contiguous() for k, v in self.hmm.state_dict().items()})
        weights = directory / "model.safetensors"
        atomic_write(weights, lambda tmp: save_file(tensors, tmp), suffix=".safetensors")
        digest = sha256_file(weights)
        config = {"format": FORMAT, "version": VERSION, "sha256": digest, "acoustic": self.acoustic.config(),
                  "hmm": self.hmm.config(), "frontend": self.frontend, "inference_seed": self.inference_seed,
                  "extra": extra or {}}
        atomic_write_text(directory / "config.json", json.dumps(config, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "HybridRecognizer":
        """Load a checkpoint written by :meth:`save`; verifies format, version and checksum."""
        directory = Path(directory)
        config_path, weights = directory / "config.json", directory / "model.safetensors"
        if not config_path.is_file() or not weights.is_file():
            raise ModelFileError(f"{directory}: needs config.json and model.safetensors (written by save())")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{config_path}: unreadable ({exc})") from None
        if config.get("format") != FORMAT:
            raise ModelFileError(f"{config_path}: not a hybrid recogniser checkpoint (format {config.get('format')!r})")
        if config.get("version") != VERSION:
            raise ModelFileError(f"{config_path}: checkpoint version {config.get('version')} != {VERSION}; retrain")
        if sha256_file(weights) != config.get("sha256"):
            raise ModelFileError(f"{weights}: checksum does not match config.json; the file is corrupt or altered")
        tensors = load_file(str(weights))
        acoustic = acoustic_from_config(config["acoustic"])
        state = {k[len("acoustic."):]: v for k, v in tensors.items() if k.startswith("acoustic.")}
        try:
            acoustic.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{weights}: weights do not fit the configured model ({exc})") from None
        hmm = DigitHMM.from_state(config["hmm"], {k[4:]: v for k, v in tensors.items() if k.startswith("hmm.")})
        return cls(acoustic, hmm, frontend=config.get("frontend"), inference_seed=config.get("inference_seed", 0))


def _replicate_tail(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Replace frames at or beyond each length with the last valid frame (differentiable gather)."""
    t = feats.shape[-2]
    index = torch.minimum(torch.arange(t)[None, :], (lengths.clamp(1, t) - 1)[:, None])
    return torch.gather(feats, 1, index[:, :, None].expand(-1, -1, feats.shape[-1]))
