"""The BNN's matrix-Gaussian posterior layer (Louizos & Welling, 2016) against independent references."""

import json

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from asrguard.asr.base import AudioBatch
from asrguard.asr.hybrid.acoustic import BayesAcoustic, BayesLinear, MatrixGaussianLinear, build_acoustic_model
from asrguard.asr.hybrid.recognizer import HybridRecognizer
from asrguard.errors import ConfigError


def _layer(n_in=3, n_out=4, prior_sigma=1.0, seed=0):
    torch.manual_seed(seed)
    layer = MatrixGaussianLinear(n_in, n_out, prior_sigma=prior_sigma)
    with torch.no_grad():  # distinct row and column scales, so that U and V both matter
        layer.row_rho.copy_(torch.linspace(-1.0, 0.5, n_in))
        layer.col_rho.copy_(torch.linspace(0.3, -2.0, n_out))
    return layer


@pytest.mark.parametrize("prior_sigma", [1.0, 0.3])
def test_closed_form_kl_equals_the_sum_over_independent_weights(prior_sigma):
    layer = _layer(prior_sigma=prior_sigma)
    row, col = layer.scales()
    # with diagonal U and V, W_ij ~ N(M_ij, u_i v_j) independently: the KL is a sum of scalar KLs
    q = Normal(layer.weight_mu, col[:, None] * row[None, :])
    p = Normal(torch.zeros_like(layer.weight_mu), torch.full_like(layer.weight_mu, prior_sigma))
    torch.testing.assert_close(layer.kl(), kl_divergence(q, p).sum())
    # and it is zero when the posterior is the prior MN(0, I, I)
    unit = MatrixGaussianLinear(5, 2, prior_sigma=1.0)
    with torch.no_grad():
        unit.weight_mu.zero_()
        unit.row_rho.fill_(float(np.log(np.expm1(1.0))))
        unit.col_rho.fill_(float(np.log(np.expm1(1.0))))
    assert abs(float(unit.kl().detach())) < 1e-4


def test_weight_samples_have_the_matrix_normal_covariance():
    layer = _layer()
    row, col = (t.detach() for t in layer.scales())
    w = layer.sample_weights(40000, torch.Generator().manual_seed(0)).detach()  # (n, out, in)
    torch.testing.assert_close(w.mean(0), layer.weight_mu.detach(), atol=0.02, rtol=0)
    expected = (col[:, None] * row[None, :]).square()
    torch.testing.assert_close(w.var(0), expected, rtol=0.05, atol=1e-4)
    # different weights are uncorrelated (diagonal U and V)
    flat = (w - w.mean(0)).reshape(len(w), -1)
    corr = torch.corrcoef(flat.T)
    assert (corr - torch.eye(corr.shape[0])).abs().max() < 0.05


def test_local_reparameterisation_matches_sampled_weights():
    layer = _layer()
    x = torch.tensor([[0.5, -1.0, 2.0]])
    gen = torch.Generator().manual_seed(1)
    n = 20000
    local = layer.forward_local(x.expand(n, 3), gen).detach()  # independent noise per row
    sampled = layer.forward_sampled(x.expand(n, 1, 3), n, gen)[:, 0].detach()
    torch.testing.assert_close(local.mean(0), sampled.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(local.std(0), sampled.std(0), rtol=0.05, atol=1e-3)
    torch.testing.assert_close(local.mean(0), layer.forward_mean(x)[0].detach(), atol=0.05, rtol=0)


def test_matrix_gaussian_bnn_trains_saves_and_loads(tmp_path):
    model = build_acoustic_model("bnn", posterior="matrix_gaussian")
    assert isinstance(model.fc1, MatrixGaussianLinear) and model.prior_sigma == 1.0
    # far fewer variance parameters than the mean field: in + out per layer instead of in * out
    mf = build_acoustic_model("bnn")
    assert isinstance(mf.fc1, BayesLinear) and mf.config()["posterior"] == "mean_field"
    n_mg = sum(p.numel() for p in model.parameters())
    assert n_mg < sum(p.numel() for p in mf.parameters()) * 0.6
    # a few Adam steps on a toy task lower the negative ELBO
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 351, generator=gen)
    y = (x[:, 0] > 0).long() * 3
    model.n_train = 256
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model.training_loss(x, y, gen).detach())
    for _ in range(30):
        loss = model.training_loss(x, y, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.training_loss(x, y, gen).detach()) < first
    rec = HybridRecognizer(model.eval())
    rec.save(tmp_path / "mg")
    assert json.loads((tmp_path / "mg" / "config.json").read_text())["acoustic"]["posterior"] == "matrix_gaussian"
    again = HybridRecognizer.load(tmp_path / "mg")
    batch = AudioBatch.from_waveforms([np.sin(np.arange(8000) / 7.0).astype(np.float32) * 0.3], 16000)
    torch.testing.assert_close(again.draws(batch, 3, seed=2)[0], rec.draws(batch, 3, seed=2)[0])
    assert isinstance(again.acoustic, BayesAcoustic) and again.acoustic.posterior == "matrix_gaussian"
    with pytest.raises(ConfigError):
        build_acoustic_model("bnn", posterior="full")
