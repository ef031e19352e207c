"""Training the hybrid recogniser: data, initial targets, cross-entropy, Viterbi re-alignment.

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
and BNN noise. Data: connected strings of 1-5 digits built from FSDD and Speech Commands
digit words of training speakers only (optionally TTS digit voices for speaker variety).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ...audio import resample
from ...errors import ConfigError, DataError
from ...text import DIGIT_WORDS
from ..base import AudioBatch
from .acoustic import AcousticModel, EnsembleAcoustic, build_acoustic_model
from .hmm import DigitHMM
from .recognizer import HybridRecognizer

log = logging.getLogger(__name__)

FSDD_TEST_SPEAKERS = ("theo",)
SPEECH_COMMANDS_TEST_FRACTION = 0.2
SPLIT_SEED = 0


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


# ---------------------------------------------------------------------------------- data
def digit_records(data_root, *, with_speech_commands: bool = True) -> list:
    """FSDD and Speech Commands digit-word records with ``split`` set the project's way.

    FSDD: speaker ``theo`` is test, everyone else train. Speech Commands: all clips are split
    by speaker with ``split_by_speaker(test_fraction=0.2, seed=0)`` (over the whole test set, so
    the split matches the rest of the project), then only the digit words are kept.
    """
    from ...data import read_fsdd, read_speech_commands, split_by_speaker

    root = Path(data_root)
    fsdd_dir = root / "fsdd"
    if not fsdd_dir.is_dir():
        raise DataError(f"{fsdd_dir}: FSDD not found; pass --data-root (data_root= in Python) pointing at the folder holding fsdd/")
    records = split_by_speaker(read_fsdd(fsdd_dir), test_speakers=list(FSDD_TEST_SPEAKERS))
    sc_dir = root / "speech_commands_v0.02_test"
    if with_speech_commands and sc_dir.is_dir():
        sc = split_by_speaker(read_speech_commands(sc_dir), test_fraction=SPEECH_COMMANDS_TEST_FRACTION,
                              seed=SPLIT_SEED)
        records += [r for r in sc if r.transcript in DIGIT_WORDS]
    return records


#: TTS voices used for extra training speakers (those of engines that are not installed are skipped).
TTS_VOICES = (
    ("flite", "kal"), ("flite", "kal16"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
    *(("espeak-ng", v) for v in ("en-us", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+f1", "en-us+f2",
                                 "en-us+f3", "en-us+f4", "en-gb", "en-gb+m2", "en-gb+f2", "en-gb-scotland",
                                 "en-029", "en-gb-x-rp")),
)


def tts_digit_records(out_dir, seed: int = 0, takes: int = 3) -> list:
    """Every TTS voice saying every digit word ``takes`` times at random rates (a voice = a speaker).

    Written under ``out_dir/take{k}`` (resumable); every record gets ``split = "train"``.
    """
    from ...data import available_tts_engines, build_tts_corpus

    installed = set(available_tts_engines())
    voices = [v for v in TTS_VOICES if v[0] in installed]
    if not voices:
        log.warning("no TTS engine installed; training without TTS voices")
        return []
    records = []
    for take in range(takes):
        part = build_tts_corpus(list(DIGIT_WORDS), Path(out_dir) / f"take{take}", seed=seed * 100 + take,
                                voices=voices, per_sentence=len(voices))
        for r in part:
            r.split = "train"
            r.id = f"{r.id}:take{take}"
        records += part
    return records


@dataclass
class Utterances:
    """Waveforms at 16 kHz with transcripts and (optional) word boundaries in seconds."""

    waveforms: list[np.ndarray]
    transcripts: list[str]
    words: list[list[dict] | None]
    ids: list[str]
    speakers: list[str]

    def __len__(self) -> int:
        return len(self.waveforms)

    def subset(self, index: Sequence[int]) -> "Utterances":
        return Utterances(*([getattr(self, f)[i] for i in index] for f in
                            ("waveforms", "transcripts", "words", "ids", "speakers")))


def connected_digits(records, n: int, seed: int, split: str, *, min_digits: int = 1, max_digits: int = 5,
                     sample_rate: int = 16000) -> Utterances:
    """``n`` connected-digit utterances of one split (1-5 digits of one speaker each)."""
    from ...data import generate_connected_digit_audio

    pairs = generate_connected_digit_audio(records, n, seed=seed, min_digits=min_digits, max_digits=max_digits,
                                           sample_rate=sample_rate, split=split)
    records_out = [u for _, u in pairs]
    return Utterances([w for w, _ in pairs], [u.transcript for u in records_out], [u.words for u in records_out],
                      [u.id for u in records_out], [u.speaker for u in records_out])


def augment(utts: Utterances, seed: int, *, speed: tuple[float, float] = (0.85, 1.15), p_speed: float = 0.6,
            snr_db: tuple[float, float] = (10.0, 40.0), p_noise: float = 0.5, p_lowpass: float = 0.3,
            sample_rate: int = 16000) -> Utterances:
    """Light augmentation, one randomised copy per utterance (seeded by ``(seed, index)``).

    Speed perturbation (resampling by a factor in ``speed``; word boundaries scaled to match),
    additive white noise at ``snr_db`` relative to the utterance, and band-limiting to 4 kHz
    (so that bandwidth does not identify the corpus: FSDD is recorded at 8 kHz).
    """
    out = []
    words_out = []
    for i, (x, words) in enumerate(zip(utts.waveforms, utts.words)):
        rng = np.random.default_rng([seed, i, 7])
        y = np.asarray(x, dtype=np.float32)
        factor = 1.0
        if rng.random() < p_speed:
            factor = float(rng.uniform(*speed))
            y = resample(y, int(round(sample_rate * factor / 50)) * 50, sample_rate)
            factor = len(x) / max(len(y), 1)
        if rng.random() < p_lowpass:
            y = resample(resample(y, sample_rate, 8000), 8000, sample_rate)[: len(y)]
        if rng.random() < p_noise:
            power = float(np.mean(np.square(y))) or 1e-8
            noise = rng.normal(0.0, math.sqrt(power / 10 ** (rng.uniform(*snr_db) / 10)), size=y.shape)
            y = y + noise.astype(np.float32)
        peak = float(np.max(np.abs(y))) or 1.0
        if peak > 1.0:
            y = y / peak
        out.append(np.clip(y, -1.0, 1.0).astype(np.float32))
        words_out.append(None if words is None else
                         [{**w, "start": w["start"] / factor, "end": w["end"] / factor} for w in words])
    return Utterances(out, list(utts.transcripts), words_out, [f"{u}:aug{seed}" for u in utts.ids],
                      list(utts.speakers))


def concat(*parts: Utterances) -> Utterances:
    return Utterances(*(sum((getattr(p, f) for p in parts), []) for f in
                        ("waveforms", "transcripts", "words", "ids", "speakers")))


def build_training_set(data_root, *, n_mixed: int = 2000, n_speech_commands: int = 500, n_tts: int = 500,
                       augment_copies: int = 1, seed: int = 0, tts_dir=None) -> Utterances:
    """Connected digits of training speakers only, plus augmented copies.

    * ``n_mixed`` utterances drawn from all FSDD and Speech Commands training speakers
      (speakers weighted by their number of clips, so mostly FSDD);
    * ``n_speech_commands`` more from Speech Commands training speakers only (many speakers,
      few clips each: the variety the five FSDD training speakers lack);
    * ``n_tts`` from offline TTS voices (``tts_dir`` is where the clips are cached; skipped
      when ``None`` or when no engine is installed);
    * ``augment_copies`` randomised copies of all of the above (:func:`augment`).
    """
    records = [r for r in digit_records(data_root) if r.split == "train"]
    parts = [connected_digits(records, n_mixed, seed=seed * 10 + 1, split="train")]
    sc = [r for r in records if r.source == "speech_commands"]
    if n_speech_commands and sc:
        parts.append(connected_digits(sc, n_speech_commands, seed=seed * 10 + 3, split="train"))
    if n_tts and tts_dir is not None:
        tts = tts_digit_records(tts_dir, seed=seed)
        if tts:
            parts.append(connected_digits(tts, n_tts, seed=seed * 10 + 4, split="train"))
    base = concat(*parts)
    copies = [augment(base, seed=seed * 10 + 11 + k) for k in range(augment_copies)]
    return concat(base, *copies)


def build_dev_set(data_root, n: int = 300, *, seed: int = 0, tts_dir=None) -> Utterances:
    """Tuning set from *training* speakers (new digit strings, fully augmented): never test speakers.

    A third each from FSDD, Speech Commands and TTS voices (when available), all with noise and
    speed perturbation, so that it is harder than the training data.
    """
    records = [r for r in digit_records(data_root) if r.split == "train"]
    pools = [[r for r in records if r.source == "fsdd"], [r for r in records if r.source == "speech_commands"]]
    if tts_dir is not None:
        pools.append(tts_digit_records(tts_dir, seed=seed))
    pools = [p for p in pools if p]
    parts = [connected_digits(p, n // len(pools) + (k < n % len(pools)), seed=seed * 10 + 7 + k, split="train")
             for k, p in enumerate(pools)]
    return augment(concat(*parts), seed=seed * 10 + 97, p_speed=1.0, p_noise=1.0)


def tune_insertion_penalty(recognizer: HybridRecognizer, dev: Utterances,
                           grid: Sequence[float] = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0),
                           batch_size: int = 25) -> dict[float, float]:
    """Set ``recognizer.hmm.insertion_penalty`` to the grid value with the best dev word accuracy.

    Ties go to the smaller penalty. Returns ``{penalty: accuracy}``.
    """
    cached = []
    with torch.no_grad():
        for start in range(0, len(dev), batch_size):
            batch = AudioBatch.from_waveforms(dev.waveforms[start:start + batch_size], recognizer.sample_rate)
            cached.append(recognizer.log_probs(batch))
    scores = {}
    for penalty in grid:
        recognizer.hmm.insertion_penalty = float(penalty)
        hyps = sum((recognizer.decode(lp, n) for lp, n in cached), [])
        scores[float(penalty)] = word_accuracy(dev.transcripts, hyps)
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


def compute_frames(recognizer: HybridRecognizer, utts: Utterances, *, batch_size: int = 32,
                   progress: Callable | None = None) -> FrameSet:
    """Front-end features of every utterance, computed batch-wise (sorted by length)."""
    order = np.argsort([len(w) for w in utts.waveforms])
    parts: list[torch.Tensor | None] = [None] * len(utts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = AudioBatch.from_waveforms([utts.waveforms[i] for i in idx], recognizer.sample_rate)
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


def initial_targets(hmm: DigitHMM, utts: Utterances, frames: FrameSet, hop_s: float) -> list[np.ndarray]:
    """Linear state targets inside each word's boundaries, silence elsewhere."""
    out = []
    for u in range(len(utts)):
        sl = frames.utterance(u)
        n = sl.stop - sl.start
        words = utts.words[u]
        if not words:
            raise DataError(f"utterance {utts.ids[u]} has no word boundaries; initial targets need them")
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


def realign(model: AcousticModel, hmm: DigitHMM, utts: Utterances, frames: FrameSet) -> list[np.ndarray]:
    """Forced alignment of every training transcript with the model's deterministic posteriors."""
    emissions = hmm.scaled_likelihoods(_frame_posteriors(model, frames).double())
    out = []
    for u in range(len(utts)):
        sl = frames.utterance(u)
        try:
            out.append(hmm.align(emissions[sl], utts.transcripts[u].split()))
        except Exception:  # noqa: BLE001 - keep the old targets for an utterance that cannot be aligned
            out.append(frames.targets[sl].numpy().copy())
    return out


def train_recognizer(kind: str, utts: Utterances, config: TrainConfig | None = None, *,
                     progress: Callable[[str, int, int], Callable] | None = None,
                     frames: FrameSet | None = None, model_kwargs: dict | None = None) -> HybridRecognizer:
    """Train a hybrid recogniser of ``kind`` on ``utts`` (which need word boundaries).

    ``progress(description, total, member)`` may return a callable advanced by the number of
    frames processed (the experiment runner passes rich progress bars). ``frames`` may be
    given to reuse features computed for another model kind. ``model_kwargs`` (e.g.
    ``{"posterior": "matrix_gaussian"}`` for a BNN) replace ``config.model_kwargs[kind]``.
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
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


def load_utterances(records, sample_rate: int = 16000) -> Utterances:
    """Read single-file records (e.g. isolated digits) as :class:`Utterances` (no word boundaries)."""
    from ...audio import load_audio

    waves = []
    for r in records:
        w, rate = load_audio(r.path, sample_rate=None)
        waves.append(resample(w, rate, sample_rate))
    return Utterances(waves, [r.transcript for r in records], [r.words for r in records],
                      [r.id for r in records], [r.speaker for r in records])
