"""Imperceptible attack (eq. 4, after Qin et al. 2019): psychoacoustic masking threshold plus two stages.

Masking threshold θ_x, computed per utterance on its own samples (never on batch padding):

1. STFT with a Hann window (``n_fft`` = 2048, hop 512 at 16 kHz, no centring; an utterance
   is zero-padded at its own end to fill its last frame, and one shorter than a frame gets a
   single zero-padded frame). PSD ``10·log10(|√(8/3)·X/n_fft|² + 1e-20)``, shifted so that the
   utterance's loudest bin is at 96 dB (the normalisation of the MPEG-1 model).
2. Bark scale ``z(f) = 13·atan(0.00076 f) + 3.5·atan((f/7500)²)`` and the absolute threshold
   of hearing ``3.64(f/1k)^−0.8 − 6.5·exp(−0.6(f/1k − 3.3)²) + 10⁻³(f/1k)⁴ − 12`` dB (−∞ below
   1 Bark, as in Qin et al.).
3. Maskers: local maxima of the PSD, their power summed over the two neighbouring bins;
   pruned when under the threshold of hearing, and within 0.5 Bark only the strongest is kept.
4. Each masker spreads with the two-slope function (27 dB/Bark below it,
   ``−27 + 0.37·max(P − 40, 0)`` dB/Bark above it) offset by ``−6.025 − 0.275·z``; the global
   threshold is the power sum of all individual thresholds and the threshold of hearing.

Everything is finite for silent frames (the 1e-20 floor; no maskers → threshold of hearing
only) and for inputs shorter than one window.

The attack: stage 1 is CW with α = 0 (:class:`~asrguard.attacks.cw.CWAttack`), stopped at its
first success (``max_shrinks`` = 1): shrinking the L∞ bound further spreads δ thinly over
every frame, silent ones included, which is the opposite of what stage 2 needs. Stage 2 starts
from that perturbation, keeps its L∞ bound, and minimises
``ℓ(x + δ, t) + α·mean(max(PSD_δ − θ_x, 0))`` where both are in dB on the same 96-dB scale (a
hinge in dB is better conditioned than Qin's linear-power hinge and is zero exactly when the
perturbation is under the threshold; ``hinge="power"`` uses Qin's linear-power form instead,
normalised by the mean threshold power). α starts at ``alpha``; every ``alpha_up_every`` steps
it is multiplied by 1.2 if the target is reached, every ``alpha_down_every`` steps by 0.8 if
not. After every step δ is also projected under ``θ_x + slack``
(:func:`project_under_threshold`), with a slack that tightens while the target is still reached
(see :class:`IAConfig`). The successful iterate with the largest share of its energy under θ_x
is kept. Each result reports the share of the perturbation's energy (and of its
time-frequency cells) under the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..asr.base import AudioBatch
from ..errors import ConfigError
from .base import AttackResult, StepReport, Stopwatch
from .cw import BOUND_MARGIN, CWAttack, CWConfig, RowAdam
from .losses import masking_hinge

PSD_FLOOR = 1e-20


def bark(freqs) -> np.ndarray:
    freqs = np.asarray(freqs, dtype=np.float64)
    return 13.0 * np.arctan(0.00076 * freqs) + 3.5 * np.arctan((freqs / 7500.0) ** 2)


def absolute_threshold_db(freqs) -> np.ndarray:
    """Threshold of hearing in dB SPL (minus 12 dB, as Qin et al.), −∞ below 1 Bark."""
    freqs = np.asarray(freqs, dtype=np.float64)
    out = np.full(freqs.shape, -np.inf)
    audible = bark(freqs) > 1.0
    khz = freqs[audible] / 1000.0
    out[audible] = 3.64 * khz ** -0.8 - 6.5 * np.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz ** 4 - 12.0
    return out


def n_analysis_frames(n_samples: int, n_fft: int, hop_length: int) -> int:
    """Frames covering an utterance (its own end zero-padded; at least one)."""
    return 1 + max(0, math.ceil((n_samples - n_fft) / hop_length))


def _frames_psd(waveform: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Unnormalised ``|√(8/3)·X/n_fft|²`` per frame, ``(T, n_fft//2 + 1)``."""
    n_frames = n_analysis_frames(len(waveform), n_fft, hop_length)
    padded = np.zeros(n_fft + (n_frames - 1) * hop_length)
    padded[: len(waveform)] = waveform
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, like torch.hann_window
    index = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    return np.abs(math.sqrt(8.0 / 3.0) * spectrum / n_fft) ** 2


def _frame_threshold_db(psd_db: np.ndarray, barks: np.ndarray, ath_db: np.ndarray) -> np.ndarray:
    """Global masking threshold (dB) of one frame's normalised PSD."""
    centre = psd_db[1:-1]
    maxima = np.nonzero((centre > psd_db[:-2]) & (centre > psd_db[2:]))[0] + 1
    power = 10.0 ** (psd_db / 10.0)
    masker_db = 10.0 * np.log10(power[maxima - 1] + power[maxima] + power[maxima + 1] + PSD_FLOOR)
    audible = masker_db >= ath_db[maxima]
    maxima, masker_db = maxima[audible], masker_db[audible]
    kept_index: list[int] = []
    kept_db: list[float] = []
    for k, p in zip(maxima, masker_db):  # sorted by frequency: keep the strongest within 0.5 Bark
        if kept_index and barks[k] - barks[kept_index[-1]] < 0.5:
            if p > kept_db[-1]:
                kept_index[-1], kept_db[-1] = k, p
        else:
            kept_index.append(k)
            kept_db.append(p)
    quiet = np.where(np.isfinite(ath_db), 10.0 ** (ath_db / 10.0), 0.0)
    total = quiet.copy()
    if kept_index:
        z_m = barks[kept_index][:, None]
        p_m = np.asarray(kept_db)[:, None]
        dz = barks[None, :] - z_m
        upper = -27.0 + 0.37 * np.maximum(p_m - 40.0, 0.0)
        spread = np.where(dz < 0, 27.0 * dz, upper * dz)
        individual = p_m + (-6.025 - 0.275 * z_m) + spread
        total = total + (10.0 ** (individual / 10.0)).sum(axis=0)
    return 10.0 * np.log10(total + PSD_FLOOR)


def masking_threshold(waveform, sample_rate: int = 16_000, *, n_fft: int = 2048,
                      hop_length: int = 512) -> tuple[np.ndarray, float]:
    """Masking threshold θ_x in dB ``(T, n_fft//2 + 1)`` on the 96-dB scale, and the PSD maximum.

    The PSD maximum (unnormalised, linear) is what maps a perturbation onto the same scale:
    see :func:`perturbation_psd_db`.

    Example:
        >>> theta, peak = masking_threshold(np.sin(np.arange(4096) * 0.1), 16000)
        >>> theta.shape
        (5, 1025)
    """
    x = np.asarray(waveform, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ConfigError("masking threshold of an empty waveform")
    psd = _frames_psd(x, n_fft, hop_length)
    psd_max = float(psd.max())
    psd_db = 10.0 * np.log10(psd + PSD_FLOOR)
    psd_db = 96.0 - psd_db.max() + psd_db
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    barks, ath = bark(freqs), absolute_threshold_db(freqs)
    theta = np.stack([_frame_threshold_db(frame, barks, ath) for frame in psd_db])
    return theta, psd_max


def perturbation_psd_db(delta: torch.Tensor, psd_max: torch.Tensor, *, n_fft: int = 2048,
                        hop_length: int = 512) -> torch.Tensor:
    """Differentiable PSD of ``(B, N)`` perturbations in dB on each utterance's 96-dB scale, ``(B, T, F)``.

    Frames follow :func:`masking_threshold` (no centring); the caller masks frames beyond
    each utterance's own frame count.
    """
    n_batch, n_samples = delta.shape
    n_frames = n_analysis_frames(n_samples, n_fft, hop_length)
    total = n_fft + (n_frames - 1) * hop_length
    padded = torch.nn.functional.pad(delta, (0, total - n_samples))
    window = torch.hann_window(n_fft, periodic=True, dtype=delta.dtype, device=delta.device)
    spec = torch.stft(padded, n_fft=n_fft, hop_length=hop_length, window=window, center=False,
                      return_complex=True).transpose(1, 2)
    power = (spec.real.square() + spec.imag.square()) * (8.0 / 3.0) / n_fft**2
    scale = 96.0 - 10.0 * torch.log10(psd_max.clamp(min=PSD_FLOOR))
    return 10.0 * torch.log10(power + PSD_FLOOR) + scale[:, None, None]


def project_under_threshold(delta: torch.Tensor, theta_db: torch.Tensor, psd_max: torch.Tensor,
                            frame_mask: torch.Tensor, slack_db: torch.Tensor, *, n_fft: int = 2048,
                            hop_length: int = 512) -> torch.Tensor:
    """Scale down the time-frequency cells of ``(B, N)`` perturbations that exceed ``θ_x + slack``.

    Each cell's STFT coefficient above its allowed power is shrunk to it (phase kept) and the
    removed part is taken out of ``δ`` by weighted overlap-add. Overlapping frames make this an
    approximate projection; repeated after every optimisation step it converges. Frames outside
    ``frame_mask`` (padding) are left alone.

    Example:
        >>> d = torch.randn(1, 4096) * 0.1
        >>> theta, peak = masking_threshold(np.sin(np.arange(4096) * 0.1), 16000)
        >>> out = project_under_threshold(d, torch.from_numpy(theta).float()[None], torch.tensor([peak]),
        ...                               torch.ones(1, theta.shape[0]), torch.zeros(1))
        >>> bool(out.abs().sum() < d.abs().sum())
        True
    """
    n_batch, n_samples = delta.shape
    n_frames = theta_db.shape[1]
    total = n_fft + (n_frames - 1) * hop_length
    padded = torch.nn.functional.pad(delta, (0, max(0, total - n_samples)))[:, :total]
    window = torch.hann_window(n_fft, periodic=True, dtype=delta.dtype, device=delta.device)
    spec = torch.stft(padded, n_fft=n_fft, hop_length=hop_length, window=window, center=False,
                      return_complex=True)  # (B, F, T)
    power = (spec.real.square() + spec.imag.square()) * (8.0 / 3.0) / n_fft**2
    scale = 96.0 - 10.0 * torch.log10(psd_max.clamp(min=PSD_FLOOR))
    allowed_db = theta_db.transpose(1, 2) + slack_db[:, None, None] - scale[:, None, None]
    allowed = 10.0 ** (allowed_db / 10.0)
    gain = torch.sqrt(torch.clamp(allowed / power.clamp(min=PSD_FLOOR), max=1.0))
    gain = torch.where(frame_mask[:, None, :] > 0, gain, torch.ones_like(gain))
    removed = torch.fft.irfft(spec * (1.0 - gain), n=n_fft, dim=1) * window[None, :, None]  # (B, n_fft, T)
    overlap = torch.nn.functional.fold(removed, output_size=(1, total), kernel_size=(1, n_fft),
                                       stride=(1, hop_length)).reshape(n_batch, total)
    norm = torch.nn.functional.fold(window.square()[None, :, None].expand(1, n_fft, n_frames).contiguous(),
                                    output_size=(1, total), kernel_size=(1, n_fft),
                                    stride=(1, hop_length)).reshape(1, total)
    # the first and last samples are covered only by window tails: damp, don't amplify
    correction = overlap / norm.clamp(min=0.1 * float(norm.max()))
    return delta - torch.nn.functional.pad(correction, (0, max(0, n_samples - total)))[:, :n_samples]


def masked_share(delta: np.ndarray, theta_db: np.ndarray, psd_max: float, *, n_fft: int = 2048,
                 hop_length: int = 512) -> tuple[float, float]:
    """(energy share, cell share) of a perturbation's time-frequency power under θ_x."""
    psd = _frames_psd(np.asarray(delta, dtype=np.float64), n_fft, hop_length)
    psd_db = 10.0 * np.log10(psd + PSD_FLOOR) + 96.0 - 10.0 * math.log10(max(psd_max, PSD_FLOOR))
    under = psd_db <= theta_db
    energy = psd.sum()
    share_energy = float(psd[under].sum() / energy) if energy > 0 else 1.0
    return share_energy, float(under.mean())


@dataclass
class IAConfig(CWConfig):
    """Imperceptible attack settings (stage 1 uses the CW fields).

    Attributes:
        alpha: initial weight of the masking hinge (dB units) in stage 2 (Qin et al. start at
            0.05 on a linear-power hinge; on our dB hinge with Adam, 10 pushed the masked energy
            share from 0.23 to 0.50 on 8 tuning utterances, 1 gave 0.42, 100 gave 0.47).
        alpha_up / alpha_up_every: multiply α by 1.2 every 20 steps while the target is reached.
        alpha_down / alpha_down_every: multiply α by 0.8 every 50 steps while it is not.
        max_shrinks: stage 1 stops at its first success (see the module docstring).
        stage2_iter: stage-2 steps per utterance. On 16 tuning utterances (masked energy
            share of the successes): 300 steps at a step of 0.1 gave 0.65, 500 gave 0.68; 500
            at 0.03 gave 0.77, at 0.01 0.75. 800 at 0.03 is the default measured above.
        stage2_learning_rate: Adam step of stage 2 as a fraction of the kept bound (larger
            steps keep pushing energy back over the threshold between projections).
        project: after every stage-2 step, shrink the time-frequency cells of δ that exceed
            ``θ_x + slack`` (:func:`project_under_threshold`). The hinge alone cannot stop the
            optimiser from spending energy in near-silent frames, where θ_x is the threshold of
            hearing; the projection makes that impossible. On the 100 held-out utterances of
            ``asrguard attack --attack ia --n 100`` the mean masked energy share of the
            successful examples rose from 0.58 (hinge only, 200 steps) to 0.88 (success 95 → 96 %).
        slack_every / slack_decay / slack_step_db / slack_min_db: the projection allows
            ``θ_x + slack``. The slack starts at the stage-1 perturbation's largest excess over
            θ_x (so the first projection changes nothing) and is checked every ``slack_every``
            steps: while the target is reached it drops by ``slack_decay`` of its distance to
            ``slack_min_db`` (at least ``slack_step_db``), and when the target is lost it rises
            by ``slack_step_db``. ``slack_min_db`` is below 0 so that re-analysed cells land
            under θ_x; like CW's bound, the slack only tightens while the attack still works.
        n_fft, hop_length: analysis frames of the psychoacoustic model.
    """

    max_shrinks: int = 1
    alpha: float = 10.0
    alpha_up: float = 1.2
    alpha_up_every: int = 20
    alpha_down: float = 0.8
    alpha_down_every: int = 50
    alpha_min: float = 5e-4
    stage2_iter: int = 800
    stage2_learning_rate: float = 0.03
    hinge: str = "db"
    project: bool = True
    slack_every: int = 10
    slack_decay: float = 0.15
    slack_step_db: float = 1.0
    slack_min_db: float = -2.0
    n_fft: int = 2048
    hop_length: int = 512

    def __post_init__(self):
        super().__post_init__()
        if self.hinge not in ("db", "power"):
            raise ConfigError(f"hinge must be 'db' or 'power', got {self.hinge!r}")
        if self.stage2_iter < 0 or self.alpha < 0 or self.n_fft < 16 or not 0 < self.hop_length <= self.n_fft:
            raise ConfigError("need stage2_iter >= 0, alpha >= 0, n_fft >= 16 and 0 < hop_length <= n_fft")
        if self.slack_every < 1 or not 0 <= self.slack_decay < 1 or self.slack_step_db <= 0:
            raise ConfigError("need slack_every >= 1, 0 <= slack_decay < 1 and slack_step_db > 0")


class ImperceptibleAttack(CWAttack):
    """Qin et al. two-stage attack: CW, then push the perturbation under the masking threshold."""

    name = "ia"
    config_class = IAConfig

    def generate(self, audio_batch, targets: Sequence[str] | None = None) -> list[AttackResult]:
        c = self.config
        clock = Stopwatch()
        batch, targets, originals, original_transcripts = self._prepare(audio_batch, targets)
        # thresholds per utterance, on its own samples, before anything is padded
        thresholds = [masking_threshold(x, batch.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length)
                      for x in originals]
        stage1 = self.optimise(batch, targets, clock=clock)
        n_batch = len(batch)
        deltas = stage1.kept
        stage1_share = [masked_share(deltas[i], *thresholds[i], n_fft=c.n_fft, hop_length=c.hop_length)[0]
                        for i in range(n_batch)]
        rows = [i for i in range(n_batch) if stage1.best[i] is not None]
        stage2_steps = np.zeros(n_batch, dtype=int)
        if rows and c.stage2_iter > 0:
            # stage 2 stays inside the bound under which the best stage-1 perturbation was found
            improved, stage2_steps = self._stage2(batch, targets, rows, deltas, stage1.best_bound, thresholds)
            for i, d in improved.items():
                deltas[i] = d
        adversarial = [originals[i] + deltas[i] for i in range(n_batch)]
        extras = []
        for i in range(n_batch):
            adv = np.clip(adversarial[i], -1, 1).astype(np.float32)
            energy, cells = masked_share(adv.astype(np.float64) - originals[i], *thresholds[i], n_fft=c.n_fft,
                                         hop_length=c.hop_length)
            extras.append({"masked_energy_share": energy, "masked_cell_share": cells,
                           "masked_energy_share_stage1": stage1_share[i],
                           "stage1_success": stage1.best[i] is not None,
                           "stage2_iterations": int(stage2_steps[i]),
                           "first_success_iteration": stage1.first_success[i],
                           "success_history": stage1.history[i]})
        iterations = [stage1.iterations[i] + int(stage2_steps[i]) for i in range(n_batch)]
        return self._finish(originals, adversarial, targets, iterations, clock(), original_transcripts, extras)

    def _stage2(self, batch: AudioBatch, targets, rows, deltas, bounds, thresholds):
        c = self.config
        x_all = batch.waveforms.detach().float()
        lengths_all = batch.lengths
        x = x_all[rows]
        lengths = lengths_all[rows]
        n_rows, n_samples = x.shape
        mask = (torch.arange(n_samples)[None, :] < lengths[:, None]).float()
        bound = (bounds[rows].float() * (1.0 - BOUND_MARGIN))[:, None]
        delta = torch.zeros_like(x)
        for j, i in enumerate(rows):
            delta[j, : len(deltas[i])] = torch.from_numpy(deltas[i]).float()
        delta = torch.maximum(torch.minimum(delta, bound), -bound) * mask
        n_frames_total = n_analysis_frames(n_samples, c.n_fft, c.hop_length)
        theta = torch.full((n_rows, n_frames_total, c.n_fft // 2 + 1), 0.0)
        frame_mask = torch.zeros(n_rows, n_frames_total)
        psd_max = torch.zeros(n_rows)
        for j, i in enumerate(rows):
            th, pm = thresholds[i]
            theta[j, : th.shape[0]] = torch.from_numpy(th).float()
            frame_mask[j, : th.shape[0]] = 1.0
            psd_max[j] = pm
        sub_targets = [targets[i] for i in rows]
        alpha = torch.full((n_rows,), float(c.alpha))
        with torch.no_grad():
            start_psd = perturbation_psd_db(delta, psd_max, n_fft=c.n_fft, hop_length=c.hop_length)
            excess = (start_psd[:, :n_frames_total] - theta).masked_fill(frame_mask[..., None] == 0, -math.inf)
            slack = excess.amax(dim=(1, 2)).clamp(min=c.slack_min_db)
        slack_start = slack.clone()
        adam = RowAdam(x.shape)
        best_share = np.full(n_rows, -np.inf)
        best: dict[int, np.ndarray] = {}
        steps = np.zeros(len(lengths_all), dtype=int)

        def share_of(d: torch.Tensor) -> np.ndarray:
            """Energy share under θ_x, as :func:`masked_share` reports it."""
            psd = perturbation_psd_db(d, psd_max, n_fft=c.n_fft, hop_length=c.hop_length)[:, : n_frames_total]
            power = 10.0 ** (psd / 10.0) * frame_mask[..., None]
            under = (power * (psd <= theta)).sum(dim=(1, 2))
            return (under / power.sum(dim=(1, 2)).clamp(min=PSD_FLOOR)).numpy()

        for step in range(1, c.stage2_iter + 1):
            d = delta.clone().requires_grad_(True)
            adv = torch.clamp(x + d, -1.0, 1.0)
            loss = self.target_loss(AudioBatch(adv, lengths, batch.sample_rate), sub_targets)
            psd = perturbation_psd_db(d, psd_max, n_fft=c.n_fft, hop_length=c.hop_length)[:, : n_frames_total]
            hinge = masking_hinge(psd, theta, frame_mask, c.hinge)
            (grad,) = torch.autograd.grad((loss + alpha * hinge).sum(), d)
            grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0) * mask
            updated = delta - c.stage2_learning_rate * bound * adam.direction(slice(None), n_samples, grad)
            delta = torch.maximum(torch.minimum(updated, bound), -bound) * mask
            if c.project:
                delta = project_under_threshold(delta, theta, psd_max, frame_mask, slack, n_fft=c.n_fft,
                                                hop_length=c.hop_length)
                delta = torch.maximum(torch.minimum(delta, bound), -bound) * mask
            for i in rows:
                steps[i] += 1
            up, down = step % c.alpha_up_every == 0, step % c.alpha_down_every == 0
            if up or down or step % c.slack_every == 0 or step == c.stage2_iter:
                with torch.no_grad():
                    adv = torch.clamp(x + delta, -1.0, 1.0)
                    ok = self.is_success(AudioBatch(adv, lengths, batch.sample_rate), sub_targets, step)
                    share = share_of(adv - x)
                for j, i in enumerate(rows):
                    if ok[j] and share[j] > best_share[j]:
                        best_share[j] = share[j]
                        best[i] = (adv[j, : int(lengths[j])] - x[j, : int(lengths[j])]).numpy().copy()
                    if up and ok[j]:
                        alpha[j] *= c.alpha_up
                    if down and not ok[j]:
                        alpha[j] = max(float(alpha[j]) * c.alpha_down, c.alpha_min)
                    if step % c.slack_every == 0:
                        gap = float(slack[j]) - c.slack_min_db
                        if ok[j]:
                            slack[j] = max(float(slack[j]) - max(c.slack_step_db, c.slack_decay * gap), c.slack_min_db)
                        else:
                            slack[j] = min(float(slack[j]) + c.slack_step_db, float(slack_start[j]))
                if self.on_step is not None:  # the masking stage is as long as the first: keep bars moving
                    self.on_step(StepReport(c.max_iter + step, c.max_iter + c.stage2_iter, n_rows, len(lengths_all),
                                            int(ok.sum()), {}, phase="masking"))
                if np.all(best_share >= 0.999):  # every perturbation is already under its threshold
                    break
        return best, steps


__all__ = ["IAConfig", "ImperceptibleAttack", "absolute_threshold_db", "bark", "masked_share",
           "masking_threshold", "perturbation_psd_db", "project_under_threshold"]
