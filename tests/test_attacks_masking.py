import numpy as np
import torch

from asrguard.attacks.imperceptible import (absolute_threshold_db, masked_share, masking_threshold,
                                            perturbation_psd_db, project_under_threshold)
from conftest import tone


def test_masking_threshold_of_a_tone_peaks_at_the_tone_and_falls_off():
    rate, freq = 16000, 1000.0
    theta, psd_max = masking_threshold(tone(freq, 1.0, rate, 0.5), rate)
    assert psd_max > 0
    frame = theta[theta.shape[0] // 2]
    freqs = np.fft.rfftfreq(2048, 1 / rate)
    peak = int(np.argmax(frame))
    assert abs(freqs[peak] - freq) <= 2 * rate / 2048
    # falls off monotonically on both sides over the next ~1.5 kHz below and ~2 kHz above
    below = frame[peak - 150:peak + 1]
    above = frame[peak:peak + 250]
    assert np.all(np.diff(below) >= -1e-9)
    assert np.all(np.diff(above) <= 1e-9)
    assert frame[peak] - frame[peak - 100] > 20 and frame[peak] - frame[peak + 100] > 10


def test_no_nan_for_silence_short_inputs_and_silent_frames():
    rate = 16000
    for x in (np.zeros(16000), np.zeros(10), tone(500.0, 0.01, rate), np.r_[tone(500.0, 0.3), np.zeros(8000)]):
        theta, psd_max = masking_threshold(x, rate)
        assert np.all(np.isfinite(theta)) and np.isfinite(psd_max)
        psd = perturbation_psd_db(torch.full((1, len(x)), 1e-3), torch.tensor([psd_max]))
        assert torch.isfinite(psd).all()
        energy, cells = masked_share(np.full(len(x), 1e-3), theta, psd_max)
        assert 0.0 <= energy <= 1.0 and 0.0 <= cells <= 1.0
    assert np.isneginf(absolute_threshold_db([20.0]))[0] and np.isfinite(absolute_threshold_db([1000.0]))[0]


def test_torch_psd_matches_the_numpy_framing_used_for_the_share():
    rate = 16000
    x = tone(700.0, 0.4, rate)
    theta, psd_max = masking_threshold(x, rate)
    delta = 0.01 * np.random.default_rng(0).standard_normal(len(x))
    psd = perturbation_psd_db(torch.tensor(delta[None], dtype=torch.float64), torch.tensor([psd_max]))[0].numpy()
    assert psd.shape == theta.shape
    _, cells = masked_share(delta, theta, psd_max)
    assert abs(cells - float(np.mean(psd <= theta))) < 1e-3
    # a quieter perturbation is better masked
    assert masked_share(delta * 0.01, theta, psd_max)[0] > masked_share(delta, theta, psd_max)[0]


def test_projection_moves_a_perturbation_under_the_threshold_and_leaves_padding_alone():
    rate = 16000
    # a tone then silence: in the silent half only the threshold of hearing masks anything
    x = np.r_[tone(600.0, 0.5, rate, 0.5), np.zeros(8000)]
    theta, psd_max = masking_threshold(x, rate)
    delta = torch.tensor(0.01 * np.random.default_rng(1).standard_normal((1, len(x))))
    padded = torch.nn.functional.pad(delta, (0, 3000))  # batch padding beyond the utterance's frames
    theta_t = torch.zeros(1, 1 + (padded.shape[1] - 2048 + 511) // 512, theta.shape[1], dtype=torch.float64)
    theta_t[0, : theta.shape[0]] = torch.from_numpy(theta)
    frame_mask = torch.zeros(1, theta_t.shape[1], dtype=torch.float64)
    frame_mask[0, : theta.shape[0]] = 1.0
    before = masked_share(delta[0].numpy(), theta, psd_max)[0]
    projected = padded
    for _ in range(4):
        projected = project_under_threshold(projected, theta_t, torch.tensor([psd_max]), frame_mask,
                                            torch.tensor([-1.0], dtype=torch.float64))
    after = masked_share(projected[0, : len(x)].numpy(), theta, psd_max)[0]
    assert before < 0.5 and after > 0.98
    assert torch.isfinite(projected).all()
    # frames that belong to padding are not touched
    assert torch.equal(projected[0, -1000:], padded[0, -1000:])
    # a larger slack allows more: projecting with +20 dB keeps more of the perturbation
    loose = project_under_threshold(padded, theta_t, torch.tensor([psd_max]), frame_mask,
                                    torch.tensor([20.0], dtype=torch.float64))
    assert loose.square().sum() > projected.square().sum()
