"""Loss terms the attacks combine in their ``objective``.

* :func:`target_loss`: ``ℓ(x + δ, t)``, the recogniser's loss toward the target, plus Carlini &
  Wagner's CTC alignment margin (:func:`ctc_best_paths`, :func:`alignment_margin`) on
  recognisers whose outputs are the project's CTC characters;
* :func:`dropout_robust_loss`: ``β·ℓ_pDR``, a loss averaged over seeded dropout draws (DR);
* :func:`denoised_loss`: ``ℓ_ss``, a loss after a differentiable denoiser (NRR);
* :func:`flooded`: the audio under band-limited noise, as the noise-flooding detector adds it;
* :func:`masking_hinge`: how far a perturbation's PSD exceeds the masking threshold (IA).

Example:
    >>> psd, theta = torch.full((1, 2, 3), 5.0), torch.zeros(1, 2, 3)
    >>> masking_hinge(psd, theta, torch.tensor([[1.0, 0.0]]))   # only the first frame counts
    tensor([5.])
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..asr.base import AudioBatch, Posteriors
from ..detect.rivals.noise import band_noise
from ..text import CHARACTERS, encode

#: ``loss(batch, targets) -> (B,)``, e.g. a bound :meth:`CWAttack.target_loss`.
LossFn = Callable[[AudioBatch, Sequence[str]], torch.Tensor]


def ctc_best_paths(log_probs: np.ndarray, lengths: Sequence[int], labels: Sequence[Sequence[int]]) -> np.ndarray:
    """Most likely frame labelling (Viterbi over the CTC topology) that decodes to each target.

    ``log_probs`` is ``(B, T, C)`` with the blank at index 0; returns ``(B, T)`` labels (blank
    on padding frames). Greedy decoding of a path equals its target, so once every frame's
    argmax is its path label the attack has succeeded; :func:`alignment_margin` pushes toward
    exactly that (the "improved loss" idea of Carlini & Wagner's audio attack). Batched over
    utterances; the loop runs over frames only.
    """
    n_batch, n_time, _ = log_probs.shape
    n_states = max(2 * len(row) + 1 for row in labels)
    ext = np.zeros((n_batch, n_states), dtype=np.int64)
    valid = np.zeros((n_batch, n_states), dtype=bool)
    for i, row in enumerate(labels):
        ext[i, 1: 2 * len(row): 2] = row
        valid[i, : 2 * len(row) + 1] = True
    skip = np.zeros_like(valid)
    skip[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    lengths = np.asarray(lengths)
    rows = np.arange(n_batch)[:, None]
    emit = np.take_along_axis(log_probs, np.broadcast_to(ext[:, None, :], (n_batch, n_time, n_states)), axis=2)
    emit = np.where(valid[:, None, :], emit, -np.inf)
    alpha = np.full((n_batch, n_states), -np.inf)
    alpha[:, :2] = emit[:, 0, :2]
    back = np.zeros((n_batch, n_time, n_states), dtype=np.int8)
    minus_inf = np.full((n_batch, 1), -np.inf)
    for t in range(1, n_time):
        stay = alpha
        step1 = np.concatenate([minus_inf, alpha[:, :-1]], axis=1)
        step2 = np.where(skip, np.concatenate([minus_inf, minus_inf, alpha[:, :-2]], axis=1), -np.inf)
        candidates = np.stack([stay, step1, step2])
        choice = candidates.argmax(axis=0)
        updated = np.take_along_axis(candidates, choice[None], axis=0)[0] + emit[:, t]
        live = (t < lengths)[:, None]
        alpha = np.where(live, updated, alpha)
        back[:, t] = np.where(live, choice, 0)
    n_ext = valid.sum(axis=1)
    last, second = alpha[rows[:, 0], n_ext - 1], alpha[rows[:, 0], np.maximum(n_ext - 2, 0)]
    state = np.where(last >= second, n_ext - 1, np.maximum(n_ext - 2, 0))
    paths = np.zeros((n_batch, n_time), dtype=np.int64)
    for t in range(n_time - 1, -1, -1):
        live = t < lengths
        paths[:, t] = np.where(live, ext[rows[:, 0], state], 0)
        state = np.where(live, state - back[rows[:, 0], t, state], state)
    return paths


def alignment_margin(log_probs: torch.Tensor, lengths: torch.Tensor, paths: torch.Tensor, margin: float) -> torch.Tensor:
    """``Σ_t max(max_{c≠π_t} log p_t(c) − log p_t(π_t) + margin, 0)`` over each utterance's frames, ``(B,)``."""
    own = log_probs.gather(2, paths[..., None])[..., 0]
    others = log_probs.masked_fill(F.one_hot(paths, log_probs.shape[-1]).bool(), float("-inf")).amax(dim=2)
    frames = (torch.arange(log_probs.shape[1])[None, :] < lengths[:, None]).to(log_probs.dtype)
    return (torch.relu(others - own + margin) * frames).sum(dim=1)


def has_project_characters(recognizer) -> bool:
    """Whether ``recognizer`` scores exactly :data:`asrguard.text.CHARACTERS` (blank first), in that order."""
    return isinstance(recognizer, Posteriors) and tuple(recognizer.vocabulary) == CHARACTERS


def target_loss(recognizer, batch: AudioBatch, targets: Sequence[str], *, margin_weight: float = 0.0,
                margin: float = 0.5) -> torch.Tensor:
    """``ℓ(x + δ, t)``, ``(B,)``: CTC toward ``targets`` plus ``margin_weight`` times the alignment margin.

    The margin needs per-frame posteriors over the project's CTC characters (blank at index 0,
    :data:`asrguard.text.CHARACTERS`); for any other recogniser only ``recognizer.loss`` is used.
    With CTC posteriors, the CTC loss is computed from the same forward pass as the margin (it
    equals ``recognizer.loss`` for a CTC recogniser).
    """
    # the vocabulary, not just its size: a 29-token model in another order must not get the margin
    if margin_weight > 0 and has_project_characters(recognizer):
        log_probs, lengths = recognizer.log_probs(batch)
        labels = [encode(t) for t in targets]
        flat = torch.tensor([i for row in labels for i in row], dtype=torch.long)
        ctc = F.ctc_loss(log_probs.transpose(0, 1), flat, lengths, torch.tensor([len(r) for r in labels]),
                         blank=0, reduction="none", zero_infinity=True)
        paths = torch.from_numpy(ctc_best_paths(log_probs.detach().cpu().numpy(), lengths.tolist(), labels))
        return ctc + margin_weight * alignment_margin(log_probs, lengths, paths, margin)
    return recognizer.loss(batch, targets)


def dropout_robust_loss(recognizer, loss: LossFn, batch: AudioBatch, targets: Sequence[str], *, p: float,
                        seeds: Iterable[int], weight: float = 1.0) -> torch.Tensor:
    """``β·ℓ_pDR``: ``weight`` times the mean of ``loss`` toward ``targets`` over seeded draws of the
    recogniser's dropout at rate ``p``, one draw per seed, in order; ``(B,)``.

    The weight multiplies the sum before it is divided by the number of draws, the order the
    DR attack's numbers were produced in.
    """
    seeds = list(seeds)
    total = 0.0
    for seed in seeds:
        with recognizer.stochastic(p, seed=seed):
            total = total + loss(batch, targets)
    return weight * total / len(seeds)


def denoised_loss(loss: LossFn, batch: AudioBatch, targets: Sequence[str],
                  denoise: Callable[[AudioBatch], AudioBatch]) -> torch.Tensor:
    """``ℓ_ss``: ``loss`` toward ``targets`` after a differentiable denoiser (spectral subtraction), ``(B,)``."""
    return loss(denoise(batch), targets)


def flooded(batch: AudioBatch, snr_db: float, band_hz: tuple[float, float],
            rngs: Sequence[np.random.Generator]) -> AudioBatch:
    """``batch`` plus band-limited Gaussian noise ``snr_db`` below each utterance's RMS, clipped to [-1, 1].

    ``rngs``: one generator per utterance. The noise level follows the detached audio, so the
    noise is a constant of the graph and the result is differentiable in the audio.

    Example:
        >>> b = AudioBatch.from_waveforms([np.full(1600, 0.1, np.float32)], 16000)
        >>> noise = flooded(b, 20.0, (300.0, 4000.0), [np.random.default_rng(0)]).waveforms - b.waveforms
        >>> round(float(10 * torch.log10(0.1 ** 2 / (noise ** 2).mean())), 1)
        20.0
    """
    rate, width = batch.sample_rate, batch.waveforms.shape[1]
    rows = []
    for i, n in enumerate(batch.lengths):
        w = batch.waveforms[i, : int(n)]
        rms = torch.sqrt(torch.mean(w.detach() ** 2))
        unit = torch.from_numpy(band_noise(int(n), rate, band_hz, rngs[i]))
        noisy = torch.clamp(w + unit.to(w.dtype) * rms / 10 ** (snr_db / 20), -1.0, 1.0)
        rows.append(F.pad(noisy, (0, width - int(n))))
    return batch.with_waveforms(torch.stack(rows))


def masking_hinge(psd_db: torch.Tensor, theta_db: torch.Tensor, frame_mask: torch.Tensor,
                  hinge: str = "db") -> torch.Tensor:
    """Mean excess of perturbation PSDs over the masking threshold θ_x per utterance, ``(B,)``.

    ``psd_db`` and ``theta_db`` are ``(B, T, F)`` in dB on the same 96-dB scale; frames where
    ``frame_mask`` ``(B, T)`` is 0 (padding) do not count. ``hinge="db"`` averages
    ``max(PSD_δ − θ_x, 0)`` in dB over each utterance's cells; ``"power"`` is Qin et al.'s
    linear-power hinge, divided by the mean threshold power so that it is O(1).
    """
    frames = frame_mask[..., None]
    cells = (frame_mask.sum(dim=1) * theta_db.shape[-1]).clamp(min=1.0)
    if hinge == "db":
        return (torch.relu(psd_db - theta_db) * frames).sum(dim=(1, 2)) / cells
    theta_power = 10.0 ** (theta_db / 10.0) * frames
    power_scale = theta_power.sum(dim=(1, 2)) / cells
    excess = torch.relu(10.0 ** (psd_db / 10.0) - theta_power) * frames
    return excess.sum(dim=(1, 2)) / cells / power_scale


__all__ = ["LossFn", "alignment_margin", "ctc_best_paths", "denoised_loss", "dropout_robust_loss",
           "has_project_characters", "masking_hinge", "target_loss"]
