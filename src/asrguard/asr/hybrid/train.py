"""Training the hybrid recogniser: initial targets, cross-entropy, Viterbi re-alignment.

Recipe (the same budget for every model kind; each ensemble member gets the full budget):

1. features of every training utterance (the recogniser's own front end);
2. initial frame targets from the connected-digit word boundaries: the states of each word
   spread evenly over its frames, silence elsewhere (:meth:`DigitHMM.linear_alignment`);
3. ``epochs_ce`` epochs of frame cross-entropy with Adam;
4. Viterbi re-alignment: forced alignment of every transcript with the current model
   (its deterministic approximation: dropout off, BNN weight means, ensemble mean), and
   transitions and state priors estimated from those alignments;
5. ``epochs_realign`` more epochs on the new targets.

Everything is seeded: the model initialisation, the frame order of every epoch, dropout masks
and BNN noise. The data (connected digits of training speakers) come from :mod:`.digits`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ...data.records import Utterance
from ...errors import ConfigError, DataError
from ..base import AudioBatch
from .acoustic import AcousticModel, EnsembleAcoustic, build_acoustic_model
from .hmm import DigitHMM
from .recognizer import HybridRecognizer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters shared by all model kinds."""

    epochs_ce: int = 3
    epochs_realign: int = 3
    lr: float = 1e-3
    #: the learning rate is multiplied by this after every epoch (both stages count)
    lr_decay: float = 1.0
    batch_frames: int = 256
    seed: int = 0
    weight_decay: float = 0.0
    #: extra keyword arguments for :func:`build_acoustic_model`, per kind
    model_kwargs: dict = field(default_factory=dict)
    insertion_penalty: float = 0.0
    #: front-end overrides (see ``recognizer.FRONTEND_DEFAULTS``)
    frontend: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def tune_insertion_penalty(recognizer: HybridRecognizer, dev: list[Utterance],
                           grid: Sequence[float] = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0),
                           batch_size: int = 25) -> dict[float, float]:
    """Set ``recognizer.hmm.insertion_penalty`` to the grid value with the best dev word accuracy.

    Ties go to the smaller penalty. Returns ``{penalty: accuracy}``.
    """
    cached = []
    with torch.no_grad():
        for start in range(0, len(dev), batch_size):
            chunk = dev[start:start + batch_size]
            batch = AudioBatch.from_waveforms([u.waveform for u in chunk], recognizer.sample_rate)
            cached.append(recognizer.log_probs(batch))
    scores = {}
    for penalty in grid:
        recognizer.hmm.insertion_penalty = float(penalty)
        hyps = sum((recognizer.decode(lp, n) for lp, n in cached), [])
        scores[float(penalty)] = word_accuracy([u.transcript for u in dev], hyps)
    best = max(scores, key=lambda k: (scores[k], -k))
    recognizer.hmm.insertion_penalty = best
    return scores


# ---------------------------------------------------------------------------------- frames
@dataclass
class FrameSet:
    """All training frames: base features ``(N, 39)``, context indices ``(N, 2c+1)``, targets ``(N,)``."""

    base: torch.Tensor
    context_index: torch.Tensor
    offsets: np.ndarray  # (U + 1,) frame offsets of the utterances
    targets: torch.Tensor

    @property
    def n_frames(self) -> int:
        return self.base.shape[0]

    def inputs(self, index: torch.Tensor) -> torch.Tensor:
        return self.base[self.context_index[index]].reshape(len(index), -1)

    def utterance(self, u: int) -> slice:
        return slice(int(self.offsets[u]), int(self.offsets[u + 1]))


def compute_frames(recognizer: HybridRecognizer, utts: list[Utterance], *, batch_size: int = 32,
                   progress: Callable | None = None) -> FrameSet:
    """Front-end features of every utterance, computed batch-wise (sorted by length)."""
    order = np.argsort([len(u.waveform) for u in utts])
    parts: list[torch.Tensor | None] = [None] * len(utts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = AudioBatch.from_waveforms([utts[i].waveform for i in idx], recognizer.sample_rate)
            feats, lengths = recognizer.base_features(batch)
            for k, i in enumerate(idx):
                parts[i] = feats[k, : int(lengths[k])].clone()
            if progress:
                progress(len(idx))
    lengths = np.array([p.shape[0] for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    c = recognizer.frontend["context"]
    ctx = []
    for u, n in enumerate(lengths):
        t = np.arange(n)
        rel = np.clip(t[:, None] + np.arange(-c, c + 1)[None, :], 0, n - 1)
        ctx.append(rel + offsets[u])
    return FrameSet(torch.cat(parts), torch.from_numpy(np.concatenate(ctx)).long(), offsets,
                    torch.zeros(int(offsets[-1]), dtype=torch.long))


def initial_targets(hmm: DigitHMM, utts: list[Utterance], frames: FrameSet, hop_s: float) -> list[np.ndarray]:
    """Linear state targets inside each word's boundaries, silence elsewhere."""
    out = []
    for u, utt in enumerate(utts):
        sl = frames.utterance(u)
        n = sl.stop - sl.start
        words = utt.words
        if not words:
            raise DataError(f"utterance {utt.id} has no word boundaries; initial targets need them")
        spans = [(w["word"], w["start"] / hop_s, w["end"] / hop_s) for w in words]
        out.append(hmm.linear_alignment(n, spans))
    return out


# ---------------------------------------------------------------------------------- training
def _epoch(model: AcousticModel, frames: FrameSet, optimizer, generator: torch.Generator, batch: int,
           member: int | None, progress: Callable | None) -> float:
    model.train()
    order = torch.randperm(frames.n_frames, generator=generator)
    total, count = 0.0, 0
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        x = frames.inputs(index)
        y = frames.targets[index]
        kwargs = {"member": member} if member is not None else {}
        loss = model.training_loss(x, y, generator, **kwargs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
        if progress:
            progress(len(index))
    model.eval()
    return total / max(count, 1)


def _frame_posteriors(model: AcousticModel, frames: FrameSet, chunk: int = 8192) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, frames.n_frames, chunk):
            index = torch.arange(start, min(start + chunk, frames.n_frames))
            out.append(model.deterministic(frames.inputs(index)))
    return torch.cat(out)


def realign(model: AcousticModel, hmm: DigitHMM, utts: list[Utterance], frames: FrameSet) -> list[np.ndarray]:
    """Forced alignment of every training transcript with the model's deterministic posteriors."""
    emissions = hmm.scaled_likelihoods(_frame_posteriors(model, frames).double())
    out = []
    for u, utt in enumerate(utts):
        sl = frames.utterance(u)
        try:
            out.append(hmm.align(emissions[sl], utt.transcript.split()))
        except Exception:  # noqa: BLE001 - keep the old targets for an utterance that cannot be aligned
            out.append(frames.targets[sl].numpy().copy())
    return out


def train_recognizer(kind: str, utts: list[Utterance], config: TrainConfig | None = None, *,
                     progress: Callable[[str, int, int], Callable] | None = None,
                     frames: FrameSet | None = None, model_kwargs: dict | None = None) -> HybridRecognizer:
    """Train a hybrid recogniser of ``kind`` on ``utts`` (which need word boundaries).

    ``progress(description, total, member)`` may return a callable advanced by the number of
    frames processed (the experiment runner passes rich progress bars). ``frames`` may be
    given to reuse features computed for another model kind. ``model_kwargs`` (e.g.
    ``{"posterior": "matrix_gaussian"}`` for a BNN) replace ``config.model_kwargs[kind]``.
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)  # weight init only: masks, frame order and BNN noise use `gen` below
    kwargs = config.model_kwargs.get(kind, {}) if model_kwargs is None else model_kwargs
    model = build_acoustic_model(kind, **kwargs)
    hmm = DigitHMM.default(insertion_penalty=config.insertion_penalty)
    recognizer = HybridRecognizer(model, hmm, frontend=config.frontend)
    if frames is None:
        frames = compute_frames(recognizer, utts)
    hop_s = recognizer.frontend["hop_length"] / recognizer.sample_rate
    targets = initial_targets(hmm, utts, frames, hop_s)
    frames.targets = torch.from_numpy(np.concatenate(targets)).long()
    hmm.fit(targets, strict=False)  # priors (and provisional transitions) from the linear targets

    inputs_mean = frames.base.mean(0).repeat(2 * recognizer.frontend["context"] + 1)
    inputs_std = frames.base.std(0).repeat(2 * recognizer.frontend["context"] + 1)
    model.set_normalization(inputs_mean, inputs_std)
    if kind == "bnn":
        model.n_train = frames.n_frames

    members = list(range(len(model.members))) if isinstance(model, EnsembleAcoustic) else [None]
    optimizers, generators = {}, {}
    for m in members:
        k = 0 if m is None else m
        gen = torch.Generator().manual_seed(config.seed * 1000 + 17 * k + 1)
        if m is not None:  # a different initialisation per member, from its own seed
            with torch.no_grad():
                for layer in (model.members[m].fc1, model.members[m].fc2, model.members[m].out):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
                    layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 2 * bound - bound)
            params = list(model.members[m].parameters())
        else:
            params = list(model.parameters())
        optimizers[m] = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        generators[m] = gen

    def run_epochs(n_epochs: int, stage: str, first_epoch: int) -> None:
        for m in members:
            tick = progress(f"{kind} {stage}" + ("" if m is None else f" member {m + 1}/{len(members)}"),
                            n_epochs * frames.n_frames, 0 if m is None else m) if progress else None
            for epoch in range(n_epochs):
                for group in optimizers[m].param_groups:
                    group["lr"] = config.lr * config.lr_decay ** (first_epoch + epoch)
                loss = _epoch(model, frames, optimizers[m], generators[m], config.batch_frames, m, tick)
                log.info("%s %s member %s epoch %d: loss %.4f", kind, stage, m, epoch + 1, loss)

    run_epochs(config.epochs_ce, "CE", 0)
    if config.epochs_realign > 0:
        alignments = realign(model, hmm, utts, frames)
        hmm.fit(alignments)
        frames.targets = torch.from_numpy(np.concatenate(alignments)).long()
        run_epochs(config.epochs_realign, "Viterbi", config.epochs_ce)
    else:
        hmm.fit(realign(model, hmm, utts, frames))
    model.eval()
    return recognizer


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions between two word strings (Levenshtein on words)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def word_accuracy(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """The paper's Eq. 7: ``(N - S - D - I) / N`` over all words of the references.

    Example:
        >>> round(word_accuracy(["one two three"], ["one too three four"]), 6)
        0.333333
    """
    if len(references) != len(hypotheses):
        raise ConfigError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    n = sum(len(r.split()) for r in references)
    if n == 0:
        raise ConfigError("references contain no words")
    return 1.0 - sum(word_errors(r, h) for r, h in zip(references, hypotheses)) / n
