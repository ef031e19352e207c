"""IBM Adversarial Robustness Toolbox (ART) adapters, both directions.

* :func:`to_art_estimator`: any asrguard recogniser with ``transcribe`` and ``loss`` as an ART
  speech recogniser, so ART's audio attacks (``CarliniWagnerASR``, ``ImperceptibleASR``) run
  against it;
* :class:`ARTRecognizer`: an ART speech-recognition estimator as an asrguard recogniser with
  ``transcribe`` and ``loss``, so asrguard's attacks run against it. ART hands out loss
  gradients as numpy arrays, so the loss is a ``torch.autograd.Function`` whose backward asks
  ``estimator.loss_gradient``.

Audio is float on the [-1, 1] scale on the asrguard side. ART's attack defaults assume int16
amplitudes: scale ``eps`` and learning rates by 2**-15, or give :class:`ARTRecognizer`
``input_scale=32768`` for an estimator that takes int16-scale floats.

Needs the optional extra: ``pip install adversarial-robustness-toolbox==1.20.1``
(or ``pip install asrguard[art]``).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, InvalidAudioError
from ..text import lower_single_spaced
from .base import AudioBatch, require


def _ragged(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A 1-D object array of 1-D float32 arrays: ART's layout for audio of different lengths."""
    out = np.empty(len(arrays), dtype=object)
    out[:] = [np.asarray(a, dtype=np.float32) for a in arrays]
    return out


def _rows(x) -> list[np.ndarray]:
    """ART audio input (an object array of waveforms or a 2-D float array) as a list of 1-D arrays."""
    rows = [np.asarray(w, dtype=np.float32) for w in x]
    if any(r.ndim != 1 for r in rows):
        raise InvalidAudioError("ART audio input must be a sequence of 1-D waveforms")
    return rows


def _like(x, rows: Sequence[np.ndarray]) -> np.ndarray:
    """``rows`` in the layout of ART input ``x``: object array for ragged input, else 2-D float32."""
    if isinstance(x, np.ndarray) and x.dtype != object and x.ndim == 2:
        return np.stack(rows).astype(np.float32)
    return _ragged(rows)


def _plain_target(text) -> str:
    # ART passes targets uppercase ("SIXTY ONE"); asrguard recognisers match case themselves
    return " ".join(str(text).lower().split())


@functools.cache
def _estimator_class():
    # imported here: ART is an optional extra and slow to import
    from art.estimators.pytorch import PyTorchEstimator
    from art.estimators.speech_recognition.speech_recognizer import SpeechRecognizerMixin

    class AsrguardARTEstimator(SpeechRecognizerMixin, PyTorchEstimator):
        """An asrguard recogniser as an ART speech recogniser (float audio in [-1, 1]).

        A ``PyTorchEstimator``, so ART's PyTorch code paths (``ImperceptibleASR``'s masking
        stage) accept it; it has no ``model`` of its own: everything goes through the recogniser.
        """

        estimator_params = PyTorchEstimator.estimator_params

        def __init__(self, recognizer, *, uppercase: bool = True, on_predict=None, on_loss_gradient=None,
                     device_type: str = "cpu"):
            super().__init__(model=None, clip_values=None, channels_first=False, device_type=device_type)
            self.recognizer = recognizer
            self.uppercase = uppercase
            self.on_predict = on_predict
            self.on_loss_gradient = on_loss_gradient

        @property
        def input_shape(self) -> tuple:
            return (None,)  # one waveform of any length

        @property
        def sample_rate(self) -> int:
            return self.recognizer.sample_rate

        def _batch(self, rows) -> AudioBatch:
            # not validated: attacks legitimately step outside [-1, 1] between projections
            return AudioBatch.from_waveforms(rows, self.recognizer.sample_rate, validate=False)

        def predict(self, x, batch_size: int = 32, **kwargs) -> np.ndarray:
            """Transcripts of ``x`` (uppercase by default, as ART's attacks compare with ``y.upper()``)."""
            rows = _rows(x)
            transcripts = []
            for start in range(0, len(rows), max(int(batch_size), 1)):
                batch = self._batch(rows[start:start + batch_size])
                transcripts += [self.recognizer.normalize_text(t) for t in self.recognizer.transcribe(batch)]
            if self.on_predict is not None:
                self.on_predict(x, transcripts)
            return np.array([t.upper() if self.uppercase else t for t in transcripts])

        def _losses(self, rows, y, requires_grad: bool):
            batch = self._batch(rows)
            waveforms = batch.waveforms.clone().requires_grad_(requires_grad)
            targets = [_plain_target(t) for t in y]
            return self.recognizer.loss(batch.with_waveforms(waveforms), targets), waveforms, batch.lengths

        def loss_gradient(self, x, y, **kwargs) -> np.ndarray:
            """Gradient of each utterance's own loss toward its target ``y[i]``, in the layout of ``x``."""
            if self.on_loss_gradient is not None:
                self.on_loss_gradient(x, y)  # may raise to stop an ART attack early
            rows = _rows(x)
            # grad mode on even when called from a backward pass (ARTRecognizer over this estimator)
            with torch.enable_grad():
                loss, waveforms, lengths = self._losses(rows, y, True)
                (grad,) = torch.autograd.grad(loss.sum(), waveforms)
            return _like(x, [grad[i, : int(n)].detach().cpu().numpy() for i, n in enumerate(lengths)])

        def compute_loss(self, x, y, reduction: str = "none", **kwargs) -> np.ndarray:
            """Per-utterance losses toward ``y``; ``reduction`` "none", "mean" or "sum"."""
            with torch.no_grad():
                loss = self._losses(_rows(x), y, False)[0].detach().cpu().numpy()
            if reduction == "none":
                return loss
            if reduction in ("mean", "sum"):
                return getattr(np, reduction)(loss)
            raise ConfigError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")

        def fit(self, x, y, batch_size: int = 128, nb_epochs: int = 20, **kwargs) -> None:
            raise NotImplementedError("asrguard recognisers are trained with asrguard (asrguard train)")

        def get_activations(self, x, layer, batch_size: int = 128, framework: bool = False):
            raise NotImplementedError("asrguard recognisers expose no layers through ART")

    return AsrguardARTEstimator


def to_art_estimator(recognizer, *, uppercase: bool = True,
                     on_predict: Callable[[np.ndarray, list[str]], None] | None = None,
                     on_loss_gradient: Callable[[np.ndarray, np.ndarray], None] | None = None,
                     device_type: str = "cpu"):
    """``recognizer`` (with transcribe and loss) as an ART speech-recognition estimator.

    ``predict`` takes an object array of float waveforms (or a 2-D float array) and returns
    the transcripts, uppercased unless ``uppercase=False`` (ART's attacks compare with
    ``y.upper()``); ``loss_gradient(x, y)`` returns per-utterance gradients of the
    recogniser's loss toward ``y``. ``on_predict(x, transcripts)`` sees every prediction (in
    the recogniser's normalised form) and ``on_loss_gradient(x, y)`` runs before every
    gradient and may raise to stop an attack: hooks for timing and budgets.

    Example:
        >>> from art.attacks.evasion import CarliniWagnerASR                      # doctest: +SKIP
        >>> estimator = to_art_estimator(CTCRecognizer.load())                    # doctest: +SKIP
        >>> attack = CarliniWagnerASR(estimator, eps=0.06, learning_rate=0.003)  # doctest: +SKIP
        >>> adversarial = attack.generate(x, np.array(["OPEN THE DOOR"]))         # doctest: +SKIP
    """
    require(recognizer, "transcribe", "loss", user="to_art_estimator")
    return _estimator_class()(recognizer, uppercase=uppercase, on_predict=on_predict,
                              on_loss_gradient=on_loss_gradient, device_type=device_type)


class _EstimatorLoss(torch.autograd.Function):
    """Per-utterance losses whose gradient comes from ``estimator.loss_gradient`` (numpy)."""

    @staticmethod
    def forward(ctx, waveforms, lengths, owner, targets):
        ctx.save_for_backward(waveforms, lengths)
        ctx.owner, ctx.targets = owner, targets
        return owner._loss_values(waveforms, lengths, targets)

    @staticmethod
    def backward(ctx, grad_output):
        waveforms, lengths = ctx.saved_tensors
        grad = ctx.owner._loss_gradient(waveforms, lengths, ctx.targets)
        return grad * grad_output[:, None].to(grad.dtype), None, None, None


class ARTRecognizer:
    """An ART speech-recognition estimator as an asrguard recogniser (``transcribe`` and ``loss``).

    It offers only what ART gives: transcripts (``estimator.predict``) and a loss with
    gradients (``estimator.loss_gradient``); no posteriors and no inference-time randomness,
    so attacks that need those refuse it. The loss value is ``estimator.compute_loss`` per
    utterance where the estimator implements it, NaN otherwise (ART's speech estimators
    mostly do not); attacks use only its gradient. ART's gradient for utterance ``i`` is taken
    as the gradient of that utterance's own loss.

    Parameters:
        estimator: an ART speech recogniser (``predict`` and ``loss_gradient`` on object arrays
            of float waveforms).
        sample_rate: its rate; default ``estimator.sample_rate`` where it has one, else 16000.
        input_scale: the estimator sees ``input_scale · x`` (32768 for int16-scale estimators).
        uppercase_targets: hand targets to the estimator uppercase (ART's convention).

    Example:
        >>> from asrguard.attacks.cw import CWAttack, CWConfig             # doctest: +SKIP
        >>> recognizer = ARTRecognizer(art_estimator)                      # doctest: +SKIP
        >>> CWAttack(recognizer, CWConfig(max_iter=100)).generate([x], ["stop"])  # doctest: +SKIP
    """

    def __init__(self, estimator, sample_rate: int | None = None, *, input_scale: float = 1.0,
                 uppercase_targets: bool = True):
        if sample_rate is None:
            try:
                sample_rate = estimator.sample_rate
            except (AttributeError, NotImplementedError):
                sample_rate = 16000
        if not input_scale > 0:
            raise ConfigError(f"input_scale must be > 0, got {input_scale}")
        self.estimator = estimator
        self.sample_rate = int(sample_rate)
        self.input_scale = float(input_scale)
        self.uppercase_targets = uppercase_targets
        self._has_loss_values = True

    # --- Transcriber -------------------------------------------------------------------
    def _as_batch(self, batch) -> AudioBatch:
        if not isinstance(batch, AudioBatch):
            batch = AudioBatch.from_waveforms(batch, self.sample_rate)
        if batch.sample_rate != self.sample_rate:
            raise InvalidAudioError(f"batch is at {batch.sample_rate} Hz but the estimator expects "
                                    f"{self.sample_rate} Hz; resample with asrguard.audio.resample")
        return batch

    def _art_input(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        x = waveforms.detach().cpu().numpy()
        return _ragged([x[i, : int(n)] * self.input_scale for i, n in enumerate(lengths.tolist())])

    def _art_targets(self, targets: Sequence[str]) -> np.ndarray:
        return np.array([t.upper() if self.uppercase_targets else t for t in map(_plain_target, targets)])

    def transcribe(self, batch: AudioBatch | Sequence) -> list[str]:
        """The estimator's transcripts, as it returns them (compare with :meth:`normalize_text`)."""
        batch = self._as_batch(batch)
        predictions = self.estimator.predict(self._art_input(batch.waveforms, batch.lengths),
                                             batch_size=len(batch))
        return [str(t) for t in predictions]

    def fingerprint(self) -> str | None:
        """None: ART estimators carry no checksum of their weights."""
        return None

    @staticmethod
    def normalize_text(text: str) -> str:
        """Lowercase with single spaces (:func:`asrguard.text.lower_single_spaced`)."""
        return lower_single_spaced(text)

    # --- DifferentiableLoss ------------------------------------------------------------
    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """Any non-empty target: ART does not say how many output steps an input has."""
        return [bool(_plain_target(t)) for t in targets]

    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """Per-utterance loss ``(B,)`` toward ``targets``; its gradient is ``estimator.loss_gradient``."""
        batch = self._as_batch(batch)
        if len(targets) != len(batch):
            raise ConfigError(f"{len(targets)} targets for a batch of {len(batch)}")
        if not all(self.target_fits(batch, targets)):
            raise ConfigError("empty target")
        return _EstimatorLoss.apply(batch.waveforms, batch.lengths, self, list(targets))

    def _loss_values(self, waveforms: torch.Tensor, lengths: torch.Tensor, targets: Sequence[str]) -> torch.Tensor:
        values = torch.full((waveforms.shape[0],), math.nan, dtype=waveforms.dtype, device=waveforms.device)
        if not self._has_loss_values:
            return values
        try:
            loss = self.estimator.compute_loss(self._art_input(waveforms, lengths), self._art_targets(targets),
                                               reduction="none")
        except (NotImplementedError, TypeError):
            self._has_loss_values = False  # remembered: the estimator will not start implementing it
            return values
        loss = np.asarray(loss, dtype=np.float64).reshape(-1)
        if loss.shape[0] == waveforms.shape[0]:  # a batch total cannot be split into utterances
            values = torch.as_tensor(loss, dtype=waveforms.dtype, device=waveforms.device)
        return values

    def _loss_gradient(self, waveforms: torch.Tensor, lengths: torch.Tensor, targets: Sequence[str]) -> torch.Tensor:
        grads = self.estimator.loss_gradient(self._art_input(waveforms, lengths), self._art_targets(targets))
        out = torch.zeros_like(waveforms)  # padding gets no gradient
        for i, (g, n) in enumerate(zip(grads, lengths.tolist())):
            g = np.asarray(g, dtype=np.float32).reshape(-1)[: int(n)]
            out[i, : len(g)] = torch.from_numpy(g).to(out.device, out.dtype)
        return out * self.input_scale  # chain rule through x -> input_scale * x


__all__ = ["ARTRecognizer", "to_art_estimator"]
