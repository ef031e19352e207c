import torch

from asrguard import frontend
from conftest import tone


def test_gradcheck_logmel_mfcc_deltas_context():
    torch.manual_seed(0)
    x = (torch.randn(800, dtype=torch.float64) * 0.1).requires_grad_()

    def features(w):
        mel = frontend.log_mel(w, 16000, n_mels=8, n_fft=128, hop_length=64)
        mf = frontend.mfcc(w, 16000, n_mfcc=5, n_mels=16, n_fft=128, hop_length=64, top_db=None)
        return torch.cat([frontend.stack_context(frontend.add_deltas(mf), 1, 1).flatten(), mel.flatten()])

    assert torch.autograd.gradcheck(features, (x,), eps=1e-6, atol=1e-4)


def test_spectrogram_peak_at_tone():
    x = torch.from_numpy(tone(1000.0, 0.5))
    spec = frontend.spectrogram(x, 16000, n_fft=512, hop_length=160)
    peak_bin = int(spec.mean(0).argmax())
    assert abs(peak_bin * 16000 / 512 - 1000.0) < 16000 / 512


def test_mel_filterbank_shape_and_coverage():
    fb = frontend.mel_filterbank(257, 40, 16000, f_max=3800.0)
    assert fb.shape == (257, 40)
    assert torch.all(fb.max(0).values > 0.5)
    assert fb[int(4000 / 8000 * 256) + 1:].abs().sum() == 0  # nothing above f_max


def test_reference_hybrid_front_end_dimensions():
    features = frontend.MFCC(16000, deltas=2, context=4)(torch.randn(2, 16000) * 0.1)
    assert features.shape == (2, 81, 351)


def test_deltas_of_ramp_and_dct_orthonormal():
    ramp = torch.arange(10.0)[:, None]
    assert torch.allclose(frontend.deltas(ramp)[2:-2], torch.ones(6, 1))
    d = frontend.dct_matrix(16, 16)
    assert torch.allclose(d.T @ d, torch.eye(16), atol=1e-5)


def test_batch_matches_single():
    x = torch.randn(3, 4000) * 0.1
    batched = frontend.LogMel(16000)(x)
    single = frontend.LogMel(16000)(x[1])
    assert torch.allclose(batched[1], single, atol=1e-5)
    assert frontend.n_frames(4000, 160) == batched.shape[1]
