"""Frame-level acoustic models of the hybrid recogniser: 351-100-100-95 ReLU MLPs.

Four kinds share one interface (:class:`AcousticModel`):

* ``fnn``      - a plain feed-forward network (deterministic);
* ``dropout``  - MC dropout, ``p = 0.5`` after each hidden layer, ``T = 100`` passes at inference;
* ``ensemble`` - a deep ensemble of 5 such networks (different seeds and data orders);
* ``bnn``      - a Bayesian network trained by Bayes-by-backprop (local reparameterisation),
  ``T = 5`` weight samples. Its ``posterior`` is either ``mean_field`` (an independent Gaussian
  on every weight) or ``matrix_gaussian``, the paper's: per layer a matrix-variate Gaussian
  ``W ~ MN(M, U, V)`` with diagonal row and column covariances (Louizos & Welling, 2016).

A *draw* is one member of the predictive family - a dropout mask, an ensemble member or a
weight sample - applied to every frame of the input. ``draws(x, n, generator)`` returns ``n``
draws at once as log-posteriors ``(n, ..., C)``; ``predict`` averages ``inference_draws`` of
them in probability space (in log space: log-mean-exp). Inputs are standardised inside the
model with statistics set from the training features (:meth:`set_normalization`).

Example:
    >>> m = build_acoustic_model("dropout")
    >>> m.draws(torch.zeros(7, 351), 3, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 7, 95])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

KINDS = ("fnn", "dropout", "ensemble", "bnn")
INPUT_DIM, HIDDEN, N_STATES = 351, 100, 95
#: Inference-time draws averaged for the mean prediction, per kind (the paper's T).
DEFAULT_DRAWS = {"fnn": 1, "dropout": 100, "ensemble": 5, "bnn": 5}


def _log_mean_exp(log_probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(log_probs, dim=dim) - math.log(log_probs.shape[dim])


class AcousticModel(nn.Module):
    """Common parts: the ``(in, hidden, hidden, out)`` sizes, input standardisation, averaging."""

    kind: str = ""

    def __init__(self, input_dim: int = INPUT_DIM, hidden: int = HIDDEN, n_states: int = N_STATES):
        super().__init__()
        self.input_dim, self.hidden, self.n_states = int(input_dim), int(hidden), int(n_states)
        self.register_buffer("feature_mean", torch.zeros(self.input_dim))
        self.register_buffer("feature_std", torch.ones(self.input_dim))
        self.inference_draws = DEFAULT_DRAWS.get(self.kind, 1)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-5))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_dim:
            raise ConfigError(f"acoustic model expects {self.input_dim} features, got {x.shape[-1]}")
        return (x - self.feature_mean) / self.feature_std

    @property
    def stochastic_by_default(self) -> bool:
        return self.kind != "fnn"

    def config(self) -> dict:
        return {"kind": self.kind, "input_dim": self.input_dim, "hidden": self.hidden, "n_states": self.n_states,
                "inference_draws": self.inference_draws}

    # --- to be provided by subclasses
    def draws(self, x: torch.Tensor, n: int, generator: torch.Generator, *,
              p: float | None = None) -> torch.Tensor:
        """``n`` stochastic draws of log-posteriors ``(n, ..., C)`` for features ``x`` ``(..., F)``."""
        raise NotImplementedError

    def deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """Log-posteriors of the model's deterministic approximation (dropout off, weight means)."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor, n: int | None = None, generator: torch.Generator | None = None, *,
                chunk: int = 25) -> torch.Tensor:
        """Mean prediction over ``n`` draws (default ``inference_draws``) as log-posteriors ``(..., C)``.

        Draws are taken ``chunk`` at a time and combined with a running log-sum-exp to bound memory.
        """
        n = self.inference_draws if n is None else int(n)
        if self.kind == "fnn":
            return self.deterministic(x)
        if generator is None:  # the draws are seeded; nothing falls back to torch's global RNG
            raise ConfigError(f"{self.kind} predict() draws: pass a seeded torch.Generator")
        total, done = None, 0
        while done < n:
            k = min(chunk, n - done)
            part = torch.logsumexp(self.draws(x, k, generator), dim=0)
            total = part if total is None else torch.logaddexp(total, part)
            done += k
        return total - math.log(n)

    def training_loss(self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
                      **kwargs) -> torch.Tensor:
        raise NotImplementedError


class MLP(nn.Module):
    """351-100-100-95 ReLU network; optional dropout masks after each hidden layer."""

    def __init__(self, input_dim: int = INPUT_DIM, hidden: int = HIDDEN, n_states: int = N_STATES):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_states)

    def hidden1(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc1(x))

    def rest(self, h1: torch.Tensor, m1: torch.Tensor | None = None, m2: torch.Tensor | None = None) -> torch.Tensor:
        if m1 is not None:
            h1 = h1 * m1
        h2 = F.relu(self.fc2(h1))
        if m2 is not None:
            h2 = h2 * m2
        return self.out(h2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.hidden1(x))


def _dropout_masks(n: int, batch_shape: tuple, hidden: int, p: float, generator, device) -> tuple:
    """Inverted-dropout masks ``(n, 1, ..., 1, hidden)``: one mask per draw, shared by all frames."""
    shape = (n, *([1] * len(batch_shape)), hidden)
    keep = 1.0 - p
    m1 = (torch.rand(shape, generator=generator, device=device) < keep).float() / keep
    m2 = (torch.rand(shape, generator=generator, device=device) < keep).float() / keep
    return m1, m2


class MLPAcoustic(AcousticModel):
    """``fnn`` (no dropout) or ``dropout`` (MC dropout at ``p``) around one :class:`MLP`."""

    def __init__(self, kind: str = "fnn", p: float = 0.5, train_samples: int = 10, **sizes):
        if kind not in ("fnn", "dropout"):
            raise ConfigError(f"MLPAcoustic kind must be 'fnn' or 'dropout', got {kind!r}")
        self.kind = kind
        super().__init__(**sizes)
        self.p = float(p) if kind == "dropout" else 0.0
        #: dropout masks averaged per training example (the paper's "average gradient over 10 sub-nets")
        self.train_samples = int(train_samples) if kind == "dropout" else 1
        self.net = MLP(self.input_dim, self.hidden, self.n_states)

    def config(self) -> dict:
        return {**super().config(), "p": self.p, "train_samples": self.train_samples}

    def deterministic(self, x):
        return F.log_softmax(self.net(self.normalize(x)), dim=-1)

    def draws(self, x, n, generator, *, p=None):
        p = self.p if p is None else float(p)
        x = self.normalize(x)
        if p <= 0.0:
            return self.deterministic_normalized(x).expand(n, *x.shape[:-1], self.n_states)
        if not 0.0 < p < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {p}")
        h1 = self.net.hidden1(x)
        m1, m2 = _dropout_masks(n, tuple(x.shape[:-1]), self.hidden, p, generator, x.device)
        return F.log_softmax(self.net.rest(h1.unsqueeze(0), m1, m2), dim=-1)

    def deterministic_normalized(self, x):
        return F.log_softmax(self.net(x), dim=-1)

    def training_loss(self, x, targets, generator, **kwargs):
        """Frame cross-entropy; for ``dropout`` averaged over ``train_samples`` independent masks per frame."""
        x = self.normalize(x)
        if self.kind == "fnn":
            return F.cross_entropy(self.net(x), targets)
        h1 = self.net.hidden1(x)
        k = self.train_samples
        keep = 1.0 - self.p
        shape = (k, *h1.shape)
        m1 = (torch.rand(shape, generator=generator) < keep).float() / keep
        m2 = (torch.rand(shape, generator=generator) < keep).float() / keep
        logits = self.net.rest(h1.unsqueeze(0), m1, m2)  # (k, N, C), a fresh mask per frame and sample
        return F.cross_entropy(logits.reshape(-1, self.n_states), targets.repeat(k))


class EnsembleAcoustic(AcousticModel):
    """Deep ensemble: ``members`` MLPs; a draw is one member; the prediction averages all members."""

    kind = "ensemble"

    def __init__(self, members: int = 5, **sizes):
        super().__init__(**sizes)
        if members < 1:
            raise ConfigError(f"an ensemble needs at least one member, got {members}")
        self.members = nn.ModuleList(MLP(self.input_dim, self.hidden, self.n_states) for _ in range(members))
        self.inference_draws = int(members)

    def config(self) -> dict:
        return {**super().config(), "members": len(self.members)}

    def member_log_probs(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return F.log_softmax(self.members[index](self.normalize(x)), dim=-1)

    def all_members(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        return torch.stack([F.log_softmax(m(x), dim=-1) for m in self.members])

    def member_order(self, n: int, generator) -> list[int]:
        """Members for ``n`` draws: seeded permutations of all members, repeated as needed."""
        order: list[int] = []
        while len(order) < n:
            order += torch.randperm(len(self.members), generator=generator).tolist()
        return order[:n]

    def draws(self, x, n, generator, *, p=None):
        if p is not None and p > 0:
            raise ConfigError("an ensemble has no dropout; its draws are members (use p=None)")
        if n == len(self.members) and generator is None:
            return self.all_members(x)
        xn = self.normalize(x)
        order = self.member_order(n, generator)
        cache = {}
        out = []
        for i in order:
            if i not in cache:
                cache[i] = F.log_softmax(self.members[i](xn), dim=-1)
            out.append(cache[i])
        return torch.stack(out)

    def deterministic(self, x):
        return _log_mean_exp(self.all_members(x))

    def predict(self, x, n=None, generator=None, *, chunk=25):
        if n is None or n == len(self.members):
            return self.deterministic(x)
        return super().predict(x, n, generator, chunk=chunk)

    def training_loss(self, x, targets, generator, *, member: int = 0, **kwargs):
        """Cross-entropy of one member (members are trained independently)."""
        return F.cross_entropy(self.members[member](self.normalize(x)), targets)


def _gaussian_sample(mean: torch.Tensor, var: torch.Tensor, generator) -> torch.Tensor:
    """One draw of ``N(mean, var)`` elementwise (the local reparameterisation's pre-activations)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + var.clamp_min(1e-16).sqrt() * noise


def _check_draws(x: torch.Tensor, n: int) -> None:
    if x.shape[0] != n:
        raise ConfigError(f"forward_sampled needs inputs (n={n}, ..., in), got {tuple(x.shape)}")


def _per_draw_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x`` ``(n, ..., in)`` through weights ``w`` ``(n, out, in)`` and biases ``b`` ``(n, out)``, draw by draw."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    out = torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2))
    return out.reshape(*x.shape[:-1], w.shape[1])


class BayesLinear(nn.Module):
    """Linear layer with a factorised Gaussian posterior ``N(mu, softplus(rho)^2)`` on every weight."""

    def __init__(self, n_in: int, n_out: int, prior_sigma: float = 0.1, init_sigma: float = 1e-3):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight_mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        rho = math.log(math.expm1(init_sigma))
        self.weight_rho = nn.Parameter(torch.full((n_out, n_in), rho))
        self.bias_rho = nn.Parameter(torch.full((n_out,), rho))
        self.prior_sigma = float(prior_sigma)

    def sigmas(self) -> tuple[torch.Tensor, torch.Tensor]:
        return F.softplus(self.weight_rho), F.softplus(self.bias_rho)

    def forward_local(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Training pass with the local reparameterisation trick (independent noise per row)."""
        ws, bs = self.sigmas()
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        return _gaussian_sample(mean, F.linear(x.square(), ws.square(), bs.square()), generator)

    def forward_mean(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_mu, self.bias_mu)

    def forward_sampled(self, x: torch.Tensor, n: int, generator) -> torch.Tensor:
        """``x`` is ``(n, ..., in)``: draw ``i`` of the input goes through weight sample ``i``."""
        _check_draws(x, n)
        ws, bs = self.sigmas()
        w = self.weight_mu + ws * torch.randn((n, *ws.shape), generator=generator, device=ws.device)
        b = self.bias_mu + bs * torch.randn((n, *bs.shape), generator=generator, device=bs.device)
        return _per_draw_linear(x, w, b)

    def kl(self) -> torch.Tensor:
        """``KL(q || p)`` against the zero-mean Gaussian prior ``N(0, prior_sigma^2)``."""
        total = torch.zeros(())
        s2 = self.prior_sigma ** 2
        for mu, sigma in ((self.weight_mu, self.sigmas()[0]), (self.bias_mu, self.sigmas()[1])):
            total = total + 0.5 * ((sigma.square() + mu.square()) / s2 - 1.0
                                   - 2.0 * torch.log(sigma) + math.log(s2)).sum()
        return total


class MatrixGaussianLinear(nn.Module):
    """Linear layer whose weight ``W`` (in x out) has the posterior ``MN(M, U, V)``.

    ``U = diag(u)`` (in x in) and ``V = diag(v)`` (out x out) are the row and column
    covariances, so ``W_ij ~ N(M_ij, u_i v_j)``: ``in + out`` variance parameters instead of
    ``in · out``. The prior is ``MN(0, s² I, I)`` (``s = prior_sigma``; the paper's is ``s = 1``).
    The bias is a point estimate. Weights are stored as ``(out, in)`` like :class:`nn.Linear`.
    """

    def __init__(self, n_in: int, n_out: int, prior_sigma: float = 1.0, init_sigma: float = 1e-3):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight_mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        # sqrt(u) and sqrt(v) through softplus; their product starts at init_sigma for every weight
        rho = math.log(math.expm1(math.sqrt(init_sigma)))
        self.row_rho = nn.Parameter(torch.full((n_in,), rho))
        self.col_rho = nn.Parameter(torch.full((n_out,), rho))
        self.prior_sigma = float(prior_sigma)

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(u), sqrt(v))``: the standard deviation of ``W_ij`` is their outer product."""
        return F.softplus(self.row_rho), F.softplus(self.col_rho)

    def forward_local(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Training pass, local reparameterisation: ``xW ~ N(xM, (x U xᵀ) V)`` for each row ``x``."""
        row, col = self.scales()
        mean = F.linear(x, self.weight_mu, self.bias)
        return _gaussian_sample(mean, (x.square() @ row.square()).unsqueeze(-1) * col.square(), generator)

    def forward_mean(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_mu, self.bias)

    def sample_weights(self, n: int, generator) -> torch.Tensor:
        """``n`` samples ``W = M + U^½ E V^½`` (``E`` standard normal), each stored ``(out, in)``."""
        row, col = self.scales()
        noise = torch.randn((n, *self.weight_mu.shape), generator=generator, device=self.weight_mu.device)
        return self.weight_mu + col[:, None] * noise * row[None, :]

    def forward_sampled(self, x: torch.Tensor, n: int, generator) -> torch.Tensor:
        """``x`` is ``(n, ..., in)``: draw ``i`` of the input goes through weight sample ``i``."""
        _check_draws(x, n)
        return _per_draw_linear(x, self.sample_weights(n, generator), self.bias.expand(n, -1))

    def kl(self) -> torch.Tensor:
        """``KL(MN(M, U, V) || MN(0, s² I, I))`` in closed form (``r`` = in rows, ``c`` = out columns).

        ``½ [tr(U) tr(V) / s² + ‖M‖² / s² - r c + r c log s² - c log|U| - r log|V|]``.
        """
        row, col = self.scales()
        r, c = row.numel(), col.numel()
        s2 = self.prior_sigma ** 2
        log_det_u = 2.0 * torch.log(row).sum()
        log_det_v = 2.0 * torch.log(col).sum()
        return 0.5 * (row.square().sum() * col.square().sum() / s2 + self.weight_mu.square().sum() / s2
                      - r * c + r * c * math.log(s2) - c * log_det_u - r * log_det_v)


#: The BNN's weight posteriors: layer class and default prior standard deviation.
POSTERIORS = {"mean_field": (BayesLinear, 0.1), "matrix_gaussian": (MatrixGaussianLinear, 1.0)}


class BayesAcoustic(AcousticModel):
    """Bayes-by-backprop MLP; a draw is one weight sample shared by all frames.

    ``posterior`` is ``mean_field`` (:class:`BayesLinear`) or ``matrix_gaussian``
    (:class:`MatrixGaussianLinear`, the paper's); ``prior_sigma`` defaults to 0.1 and 1.0
    respectively.
    """

    kind = "bnn"

    def __init__(self, prior_sigma: float | None = None, init_sigma: float = 1e-3, kl_weight: float = 1.0,
                 posterior: str = "mean_field", **sizes):
        super().__init__(**sizes)
        if posterior not in POSTERIORS:
            raise ConfigError(f"unknown BNN posterior {posterior!r}; choose from {', '.join(POSTERIORS)}")
        layer, default_prior = POSTERIORS[posterior]
        prior_sigma = default_prior if prior_sigma is None else float(prior_sigma)
        self.fc1 = layer(self.input_dim, self.hidden, prior_sigma, init_sigma)
        self.fc2 = layer(self.hidden, self.hidden, prior_sigma, init_sigma)
        self.out = layer(self.hidden, self.n_states, prior_sigma, init_sigma)
        self.posterior = posterior
        self.prior_sigma, self.init_sigma, self.kl_weight = float(prior_sigma), float(init_sigma), float(kl_weight)
        #: number of training frames: the KL term is divided by it (per-frame ELBO); set by the trainer
        self.n_train = 1

    def config(self) -> dict:
        return {**super().config(), "prior_sigma": self.prior_sigma, "init_sigma": self.init_sigma,
                "kl_weight": self.kl_weight, "posterior": self.posterior}

    def deterministic(self, x):
        x = self.normalize(x)
        h = F.relu(self.fc1.forward_mean(x))
        h = F.relu(self.fc2.forward_mean(h))
        return F.log_softmax(self.out.forward_mean(h), dim=-1)

    def draws(self, x, n, generator, *, p=None):
        if p is not None and p > 0:
            raise ConfigError("a BNN has no dropout; its draws are weight samples (use p=None)")
        x = self.normalize(x).unsqueeze(0).expand(n, *x.shape)
        h = F.relu(self.fc1.forward_sampled(x, n, generator))
        h = F.relu(self.fc2.forward_sampled(h, n, generator))
        return F.log_softmax(self.out.forward_sampled(h, n, generator), dim=-1)

    def kl(self) -> torch.Tensor:
        return self.fc1.kl() + self.fc2.kl() + self.out.kl()

    def training_loss(self, x, targets, generator, **kwargs):
        """Negative per-frame ELBO: cross-entropy under a sampled network + KL / n_train."""
        x = self.normalize(x)
        h = F.relu(self.fc1.forward_local(x, generator))
        h = F.relu(self.fc2.forward_local(h, generator))
        logits = self.out.forward_local(h, generator)
        return F.cross_entropy(logits, targets) + self.kl_weight * self.kl() / max(1, self.n_train)


def build_acoustic_model(kind: str, **kwargs) -> AcousticModel:
    """Construct an untrained acoustic model of ``kind`` (``fnn``, ``dropout``, ``ensemble``, ``bnn``)."""
    if kind in ("fnn", "dropout"):
        return MLPAcoustic(kind, **kwargs)
    if kind == "ensemble":
        return EnsembleAcoustic(**kwargs)
    if kind == "bnn":
        return BayesAcoustic(**kwargs)
    raise ConfigError(f"unknown acoustic model kind {kind!r}; choose from {', '.join(KINDS)}")


def acoustic_from_config(config: dict) -> AcousticModel:
    """Rebuild an (untrained) model from :meth:`AcousticModel.config` output."""
    config = dict(config)
    kind = config.pop("kind")
    draws = config.pop("inference_draws", None)
    sizes = {k: config.pop(k) for k in ("input_dim", "hidden", "n_states") if k in config}
    if kind == "fnn":
        config.pop("p", None)
        config.pop("train_samples", None)
    model = build_acoustic_model(kind, **sizes, **config)
    if draws is not None:
        model.inference_draws = int(draws)
    return model
