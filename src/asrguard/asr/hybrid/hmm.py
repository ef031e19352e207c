"""Digit-loop HMM of the hybrid recogniser: transition estimation, Viterbi, alignment.

The states and arcs are those of a :class:`~.topology.Topology` (95 states by default; see
:mod:`.topology`). Every path starts in silence.

Decoding works on *scaled likelihoods* ``log p(state | x) - log p(state)`` (the hybrid
approximation of ``log p(x | state)`` up to a constant), never on raw posteriors.
A word insertion penalty (log domain, positive = fewer words) is subtracted on every arc
that enters a word.

Viterbi is vectorised over states (a dense ``(C, C)`` max per frame); only time is a Python
loop. Forced alignment is the same recursion over the states of one transcript, with an
optional silence between words and at the end.

Example:
    >>> hmm = DigitHMM.default()
    >>> hmm.n_states
    95
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from ...errors import ConfigError
from .topology import SIL, AlignmentError, Topology

NEG_INF = -math.inf


class DigitHMM:
    """Transitions, state priors and decoding settings over a :class:`Topology`.

    ``log_trans[i, j]`` is ``log P(j | i)``; each row is a proper distribution over the
    allowed arcs. ``log_prior`` are log state priors used to turn posteriors into scaled
    likelihoods. ``vocabulary`` limits the words the decoder may output (words without
    training data, such as ``oh`` on a corpus that says ``zero``, are left out).
    """

    def __init__(self, topology: Topology | None = None, *, log_trans: np.ndarray | None = None,
                 log_prior: np.ndarray | None = None, insertion_penalty: float = 0.0,
                 vocabulary: Sequence[str] | None = None, prior_scale: float = 1.0):
        self.topology = topology or Topology()
        c = self.topology.n_states
        self._allowed = self.topology.allowed()
        self._entry = self.topology.entry_arcs()
        if log_trans is None:
            log_trans = default_log_transitions(self.topology)
        log_trans = np.asarray(log_trans, dtype=np.float64)
        if log_trans.shape != (c, c):
            raise ConfigError(f"log_trans must be ({c}, {c}), got {log_trans.shape}")
        if np.any(np.isfinite(log_trans) & ~self._allowed):
            raise ConfigError("log_trans has probability on an arc the topology does not allow")
        sums = np.exp(log_trans).sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-6):
            bad = int(np.argmax(np.abs(sums - 1.0)))
            raise ConfigError(f"transition row {bad} sums to {sums[bad]:.6f}, not 1")
        self.log_trans = log_trans
        self.log_prior = (np.full(c, -math.log(c)) if log_prior is None
                          else np.asarray(log_prior, dtype=np.float64))
        if self.log_prior.shape != (c,):
            raise ConfigError(f"log_prior must be ({c},), got {self.log_prior.shape}")
        self.insertion_penalty = float(insertion_penalty)
        #: exponent on the state priors in ``log p(s|x) - prior_scale * log p(s)`` (1 = exact Bayes)
        self.prior_scale = float(prior_scale)
        words = self.topology.words
        self.vocabulary = tuple(words if vocabulary is None else vocabulary)
        unknown = set(self.vocabulary) - set(words)
        if unknown:
            raise ConfigError(f"vocabulary words {sorted(unknown)} are not in the topology")
        self._decode_cache: tuple | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def default(cls, **kwargs) -> "DigitHMM":
        return cls(Topology(), **kwargs)

    @property
    def n_states(self) -> int:
        return self.topology.n_states

    def transition_matrix(self) -> np.ndarray:
        """``(C, C)`` transition probabilities (rows sum to 1)."""
        return np.exp(self.log_trans)

    def fit(self, alignments: Iterable, *, smoothing: float = 1.0, prior_smoothing: float = 1.0,
            set_vocabulary: bool = True, strict: bool = True) -> "DigitHMM":
        """Estimate transitions and state priors from frame-state alignments; returns self.

        Each alignment is a 1-D sequence of state ids. Transition counts along allowed arcs get
        ``smoothing`` added (so every allowed arc keeps some probability) and every row is
        normalised to 1. Priors are relative state frequencies with ``prior_smoothing`` added.
        With ``set_vocabulary`` the decoder vocabulary becomes the words seen in the alignments.
        An alignment that uses an arc the topology lacks raises :class:`ConfigError`, or with
        ``strict=False`` those transitions are left out of the counts.
        """
        c = self.n_states
        counts = np.zeros((c, c), dtype=np.float64)
        occupancy = np.zeros(c, dtype=np.float64)
        for path in alignments:
            path = np.asarray(path.cpu() if isinstance(path, torch.Tensor) else path, dtype=np.int64)
            if path.size == 0:
                continue
            if path.min() < 0 or path.max() >= c:
                raise ConfigError(f"alignment has state ids outside 0..{c - 1}")
            np.add.at(counts, (path[:-1], path[1:]), 1.0)
            occupancy += np.bincount(path, minlength=c)
        illegal = counts * ~self._allowed
        if strict and illegal.sum() > 0:
            i, j = np.argwhere(illegal > 0)[0]
            raise ConfigError(f"alignment uses the arc {i} -> {j}, which the topology does not allow")
        counts = (counts + smoothing) * self._allowed
        probs = counts / counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            self.log_trans = np.where(self._allowed, np.log(probs), NEG_INF)
        prior = (occupancy + prior_smoothing) / (occupancy.sum() + prior_smoothing * c)
        self.log_prior = np.log(prior)
        if set_vocabulary:
            unit = self.topology.state_unit
            seen = {self.topology.units[u][0] for u in np.unique(unit[occupancy > 0]) if u > 0}
            self.vocabulary = tuple(w for w in self.topology.words if w in seen) or self.topology.words
        self._decode_cache = None
        return self

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"log_trans": torch.from_numpy(self.log_trans.copy()),
                "log_prior": torch.from_numpy(self.log_prior.copy())}

    def config(self) -> dict:
        return {"units": [list(u) for u in self.topology.units], "insertion_penalty": self.insertion_penalty,
                "vocabulary": list(self.vocabulary), "prior_scale": self.prior_scale}

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "DigitHMM":
        topology = Topology(tuple((str(n), int(k)) for n, k in config["units"]))
        return cls(topology, log_trans=tensors["log_trans"].double().numpy(),
                   log_prior=tensors["log_prior"].double().numpy(),
                   insertion_penalty=config.get("insertion_penalty", 0.0),
                   vocabulary=config.get("vocabulary"), prior_scale=config.get("prior_scale", 1.0))

    # ----------------------------------------------------------------- decoding
    def scaled_likelihoods(self, log_posteriors: torch.Tensor) -> torch.Tensor:
        """``log p(s|x) - prior_scale * log p(s)``: the emission scores the decoder expects."""
        prior = torch.as_tensor(self.log_prior, dtype=log_posteriors.dtype, device=log_posteriors.device)
        return log_posteriors - self.prior_scale * prior

    def _decoding_graph(self) -> tuple[np.ndarray, np.ndarray]:
        key = (self.insertion_penalty, self.vocabulary, id(self.log_trans))
        if self._decode_cache is not None and self._decode_cache[0] == key:
            return self._decode_cache[1], self._decode_cache[2]
        log_a = self.log_trans.copy()
        log_a[self._entry] -= self.insertion_penalty
        disabled = [self.topology.offsets[w] for w in self.topology.words if w not in self.vocabulary]
        log_a[:, disabled] = NEG_INF
        finals = np.full(self.n_states, NEG_INF)
        allowed_final = [0] + [self.topology.word_states(w)[-1] for w in self.vocabulary]
        finals[allowed_final] = 0.0
        self._decode_cache = (key, log_a.astype(np.float32), finals.astype(np.float32))
        return self._decode_cache[1], self._decode_cache[2]

    def viterbi(self, emissions, lengths=None) -> list[np.ndarray]:
        """Best state paths for ``(T, C)`` or ``(B, T, C)`` emission scores (scaled likelihoods).

        ``lengths`` gives the valid frames per utterance; frames beyond are ignored.
        Returns one ``int64`` array of length ``lengths[b]`` per utterance.
        """
        e = _as_numpy(emissions)
        if e.ndim == 2:
            e = e[None]
        if e.ndim != 3 or e.shape[-1] != self.n_states:
            raise ConfigError(f"emissions must be (B, T, {self.n_states}), got {e.shape}")
        b, t_max, c = e.shape
        lengths = np.full(b, t_max) if lengths is None else _as_numpy(lengths).astype(np.int64).reshape(b)
        log_a, finals = self._decoding_graph()
        e = e.astype(np.float32, copy=False)
        back = np.zeros((t_max, b, c), dtype=np.int16)
        delta = np.full((b, c), -np.inf, dtype=np.float32)
        delta[:, 0] = e[:, 0, 0]  # every path starts in silence
        scores = np.empty((b, c, c), dtype=np.float32)
        active_all = bool(np.all(lengths >= t_max))
        for t in range(1, t_max):
            np.add(delta[:, :, None], log_a[None], out=scores)
            arg = scores.argmax(axis=1)
            best = np.take_along_axis(scores, arg[:, None, :], axis=1)[:, 0, :]
            back[t] = arg
            new = best + e[:, t]
            if active_all:
                delta = new
            else:
                live = (t < lengths)[:, None]
                delta = np.where(live, new, delta)
        paths = []
        for i in range(b):
            n = int(lengths[i])
            if n <= 0:
                paths.append(np.zeros(0, dtype=np.int64))
                continue
            final = delta[i] + finals
            state = int(np.argmax(final))
            if not np.isfinite(final[state]):
                state = int(np.argmax(delta[i]))
            path = np.empty(n, dtype=np.int64)
            path[n - 1] = state
            for t in range(n - 1, 0, -1):
                state = int(back[t, i, state])
                path[t - 1] = state
            paths.append(path)
        return paths

    def words_of_path(self, path) -> list[str]:
        """Word sequence of a state path (a word starts at every arc into a word's first state)."""
        return [w for w, _, _ in self.segments(path) if w != SIL]

    def segments(self, path) -> list[tuple[str, int, int]]:
        """``(unit, first_frame, end_frame_exclusive)`` for every unit instance on a path."""
        path = _as_numpy(path).astype(np.int64)
        if path.size == 0:
            return []
        unit = self.topology.state_unit[path]
        first = np.zeros(self.n_states, dtype=bool)
        first[self.topology.first_states] = True
        starts = [0]
        for t in range(1, len(path)):
            if unit[t] != unit[t - 1] or (first[path[t]] and path[t] != path[t - 1]):
                starts.append(t)
        starts.append(len(path))
        names = [u for u, _ in self.topology.units]
        return [(names[unit[s]], s, e) for s, e in zip(starts[:-1], starts[1:])]

    def decode(self, log_posteriors, lengths=None) -> list[str]:
        """Transcripts from log-posteriors ``(B, T, C)``: scaled likelihoods, Viterbi, words."""
        lp = torch.as_tensor(log_posteriors).detach().float().cpu()
        paths = self.viterbi(self.scaled_likelihoods(lp), lengths)
        return [" ".join(self.words_of_path(p)) for p in paths]

    # ----------------------------------------------------------------- alignment
    def align(self, emissions, words: Sequence[str] | str, *, optional_sil: bool = True) -> np.ndarray:
        """Forced alignment of ``words`` to ``(T, C)`` emission scores; returns ``(T,)`` state ids.

        The state sequence is ``sil, word_1, [sil], word_2, [sil], ..., word_n, [sil]``: the
        leading silence is forced (at least one frame), the bracketed ones are optional when
        ``optional_sil`` (otherwise between-word silences are left out and the trailing one
        stays optional). Raises :class:`AlignmentError` when there are too few frames.
        """
        e = _as_numpy(emissions).astype(np.float64)
        if e.ndim != 2 or e.shape[1] != self.n_states:
            raise ConfigError(f"emissions must be (T, {self.n_states}), got {e.shape}")
        if isinstance(words, str):
            words = words.split()
        states, optional = self._linear_states(words, optional_sil)
        n_pos, n_frames = len(states), e.shape[0]
        minimum = n_pos - int(optional.sum())
        if n_frames < minimum:
            raise AlignmentError(
                f"{n_frames} frames are too few for {' '.join(words)!r}, which needs at least {minimum}"
            )
        la = self.log_trans
        stay = la[states, states]
        advance = np.full(n_pos, NEG_INF)
        advance[1:] = la[states[:-1], states[1:]]
        skip = np.full(n_pos, NEG_INF)  # arrive at p from p-2, jumping an optional silence at p-1
        skippable = np.zeros(n_pos, dtype=bool)
        skippable[2:] = optional[1:-1]
        skip[skippable] = la[states[:-2][skippable[2:]], states[2:][skippable[2:]]]
        emit = e[:, states]  # (T, P)
        delta = np.full(n_pos, NEG_INF)
        delta[0] = emit[0, 0]
        back = np.zeros((n_frames, n_pos), dtype=np.int8)
        cand = np.empty((3, n_pos))
        for t in range(1, n_frames):
            cand[0] = delta + stay
            cand[1, 0] = NEG_INF
            cand[1, 1:] = delta[:-1] + advance[1:]
            cand[2, :2] = NEG_INF
            cand[2, 2:] = delta[:-2] + skip[2:]
            arg = cand.argmax(axis=0)
            delta = cand[arg, np.arange(n_pos)] + emit[t]
            back[t] = arg
        finals = [n_pos - 1] + ([n_pos - 2] if optional[-1] else [])
        end = max(finals, key=lambda p: delta[p])
        if not np.isfinite(delta[end]):
            raise AlignmentError(f"no path aligns {' '.join(words)!r} to {n_frames} frames")
        pos = np.empty(n_frames, dtype=np.int64)
        pos[-1] = end
        for t in range(n_frames - 1, 0, -1):
            pos[t - 1] = pos[t] - back[t, pos[t]]
        return states[pos]

    def _linear_states(self, words: Sequence[str], optional_sil: bool) -> tuple[np.ndarray, np.ndarray]:
        words = [w for w in words if w != SIL]
        states, optional = [0], [False]
        for i, word in enumerate(words):
            if word not in self.topology.words:
                raise AlignmentError(f"unknown word {word!r}; the HMM knows {', '.join(self.topology.words)}")
            ids = list(self.topology.word_states(word))
            states += ids
            optional += [False] * len(ids)
            last = i == len(words) - 1
            if optional_sil or last:
                states.append(0)
                optional.append(True)
        if not words:
            return np.array([0]), np.array([False])
        return np.array(states, dtype=np.int64), np.array(optional, dtype=bool)

    def linear_alignment(self, n_frames: int, word_frames: Sequence[tuple[str, float, float]]) -> np.ndarray:
        """Initial targets: silence everywhere except inside words, whose states are spread evenly.

        ``word_frames`` holds ``(word, start_frame, end_frame)`` (floats allowed, end exclusive),
        in time order. Frame 0 is always silence (paths start there). A word shorter than its
        state count is widened to that count where room allows, without overlapping its
        neighbours; when there is no room, some of its states are skipped, so the result may then
        use arcs the topology lacks (fine for training targets, refused by :meth:`fit`).
        """
        path = np.zeros(n_frames, dtype=np.int64)
        spans = sorted(word_frames, key=lambda w: w[1])
        floor = 1
        for k, (word, start, end) in enumerate(spans):
            ids = np.array(self.topology.word_states(word))
            ceiling = int(round(spans[k + 1][1])) if k + 1 < len(spans) else n_frames
            ceiling = min(max(ceiling, floor), n_frames)
            a = min(max(int(round(start)), floor), n_frames)
            b = min(max(int(round(end)), a), ceiling)
            if b - a < len(ids):
                b = min(ceiling, a + len(ids))
                a = max(floor, b - len(ids))
            if b <= a:
                continue
            pos = np.floor(np.arange(b - a) * len(ids) / (b - a)).astype(np.int64)
            path[a:b] = ids[pos]
            floor = b
        return path


def default_log_transitions(topology: Topology, *, self_loop: float = 0.7, sil_loop: float = 0.9) -> np.ndarray:
    """Untrained transitions: fixed self-loops, exits spread uniformly over the allowed arcs."""
    allowed = topology.allowed()
    c = topology.n_states
    probs = np.zeros((c, c))
    for i in range(c):
        loop = sil_loop if i == 0 else self_loop
        others = np.flatnonzero(allowed[i])
        others = others[others != i]
        probs[i, i] = loop
        probs[i, others] = (1.0 - loop) / len(others)
    with np.errstate(divide="ignore"):
        return np.where(allowed, np.log(probs), NEG_INF)


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
