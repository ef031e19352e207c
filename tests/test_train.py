import numpy as np
import torch
from safetensors.torch import load_file

from asrguard.asr.ctc import CTCConfig, CTCRecognizer, training_dropout
from asrguard.asr.train import (SpecAugment, TrainConfig, _load_optimizer, _save_checkpoint, add_noise,
                                change_speed, make_batches, noise_only_items)
from asrguard.audio import snr_db
from conftest import tone


def test_batches_cover_everything_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1000, 30000, 500))
    batches = make_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    assert spread < np.ptp(lengths) / 4


def test_speed_and_noise_augmentation():
    x = tone(400, 1.0)
    assert len(change_speed(x, 1.1)) == round(16000 / 1.1)
    noisy = add_noise(x, np.random.default_rng(0), [], snr_db=10.0)
    assert abs(snr_db(x, noisy - x) - 10.0) < 0.5


def test_spec_augment_masks_only_valid_frames():
    torch.manual_seed(0)
    features = torch.ones(2, 50, 40)
    masked = SpecAugment(TrainConfig(time_mask_fraction=0.2))(features, torch.tensor([50, 20]))
    assert masked.shape == features.shape and masked.sum() < features.sum()
    # time masks only: frames past each utterance's length are never touched, and no more
    # frames are masked than time_masks * max width
    config = TrainConfig(freq_masks=0, time_masks=2, time_mask_fraction=0.2)
    for _ in range(20):
        masked = SpecAugment(config)(features, torch.tensor([50, 20]))
        masked_frames = (masked == 0).all(dim=-1)
        assert not masked_frames[1, 20:].any()
        assert int(masked_frames[0].sum()) <= 2 * 10 and int(masked_frames[1].sum()) <= 2 * 4


def test_training_dropout_rate_scale_and_reproducibility():
    x = torch.ones(200, 500)
    torch.manual_seed(3)
    first = training_dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(first, training_dropout(x, 0.1))
    assert abs(float((first == 0).float().mean()) - 0.1) < 0.005
    assert abs(float(first.mean()) - 1.0) < 0.01  # inverted dropout keeps the expectation
    # gradients pass through kept units only, scaled like the forward pass
    leaf = torch.ones(50, 40, requires_grad=True)
    torch.manual_seed(4)
    out = training_dropout(leaf, 0.2)
    out.sum().backward()
    assert torch.equal(leaf.grad, out.detach())


def test_checkpoint_roundtrip_restores_model_and_optimizer(tmp_path):
    torch.manual_seed(0)
    recognizer = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
    optimizer = torch.optim.AdamW(recognizer.model.parameters(), lr=1e-3)
    recognizer.model.train()
    log_probs, _ = recognizer.model(torch.randn(2, 4000) * 0.1, torch.tensor([4000, 3000]))
    log_probs.sum().backward()
    optimizer.step()
    _save_checkpoint(tmp_path, recognizer, optimizer, {"epoch": 1, "history": []}, TrainConfig())
    fresh = torch.optim.AdamW(recognizer.model.parameters(), lr=1e-3)
    _load_optimizer(fresh, load_file(str(tmp_path / "optimizer.safetensors")))
    saved, restored = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for key in saved:
        assert torch.equal(saved[key]["exp_avg"], restored[key]["exp_avg"])
        assert torch.equal(saved[key]["step"], restored[key]["step"])
    assert (tmp_path / "train_state.json").exists()


def test_noise_only_items_are_quiet_crops_transcribed_as_nothing():
    rng = np.random.default_rng(0)
    bank = [rng.standard_normal(16000 * 4).astype(np.float32), rng.standard_normal(8000).astype(np.float32)]
    items = noise_only_items(bank, 30, np.random.default_rng(1))
    assert len(items) == 30 and all(i.transcript == "" for i in items)
    assert all(0.5 * 16000 - 1 <= len(i.waveform) <= 3 * 16000 or len(i.waveform) == 8000 for i in items)
    peaks_db = [20 * np.log10(np.max(np.abs(i.waveform))) for i in items]
    assert min(peaks_db) >= -40.01 and max(peaks_db) <= -5.99
    assert noise_only_items([], 5, np.random.default_rng(1)) == []
