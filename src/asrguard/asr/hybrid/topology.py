"""The digit-loop HMM's topology: which states belong to which word, and which arcs exist.

The reference topology: one silence state plus strictly left-to-right word models (``oh`` 6,
``zero`` 10, ``one`` 10, ``two`` 6, ``three`` 9, ``four`` 9, ``five`` 9, ``six`` 10, ``seven`` 10,
``eight`` 6, ``nine`` 9 states), 95 states in all. Allowed arcs:

* every state to itself;
* a word state to the next state of the same word;
* the last state of a word, and silence, to silence and to the first state of any word.

Example:
    >>> Topology().allowed().sum(axis=1)[:3].tolist()  # silence: itself and 11 word starts
    [12, 2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import AsrguardError, ConfigError

#: (unit, number of states); index 0 is silence.
UNITS: tuple[tuple[str, int], ...] = (
    ("sil", 1),
    ("oh", 6),
    ("zero", 10),
    ("one", 10),
    ("two", 6),
    ("three", 9),
    ("four", 9),
    ("five", 9),
    ("six", 10),
    ("seven", 10),
    ("eight", 6),
    ("nine", 9),
)
SIL = "sil"


class AlignmentError(AsrguardError):
    """A transcript that cannot be aligned to the given frames (too few frames, unknown word)."""


@dataclass(frozen=True)
class Topology:
    """Which states belong to which unit, and which arcs exist.

    Example:
        >>> t = Topology()
        >>> t.n_states, t.word_states("two")
        (95, range(27, 33))
    """

    units: tuple[tuple[str, int], ...] = UNITS

    def __post_init__(self):
        names = [u for u, _ in self.units]
        if not names or names[0] != SIL or self.units[0][1] != 1:
            raise ConfigError("the first unit must be 'sil' with one state")
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate unit names in {names}")
        if any(n < 1 for _, n in self.units):
            raise ConfigError("every unit needs at least one state")

    @property
    def n_states(self) -> int:
        return sum(n for _, n in self.units)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(u for u, _ in self.units[1:])

    @property
    def offsets(self) -> dict[str, int]:
        out, start = {}, 0
        for name, n in self.units:
            out[name] = start
            start += n
        return out

    def word_states(self, word: str) -> range:
        sizes = dict(self.units)
        if word not in sizes:
            raise AlignmentError(f"unknown word {word!r}; the HMM knows {', '.join(self.words)}")
        start = self.offsets[word]
        return range(start, start + sizes[word])

    @property
    def state_unit(self) -> np.ndarray:
        """``(C,)`` unit index of every state (0 = silence)."""
        return np.concatenate([np.full(n, i) for i, (_, n) in enumerate(self.units)])

    @property
    def first_states(self) -> np.ndarray:
        return np.array([self.offsets[w] for w in self.words])

    @property
    def last_states(self) -> np.ndarray:
        return np.array([self.offsets[w] + n - 1 for w, n in self.units[1:]])

    @property
    def final_states(self) -> np.ndarray:
        """States an utterance may end in: silence and the last state of every word."""
        return np.concatenate([[0], self.last_states])

    def allowed(self) -> np.ndarray:
        """``(C, C)`` boolean matrix of allowed arcs ``from -> to``."""
        c = self.n_states
        mask = np.eye(c, dtype=bool)
        for word in self.words:
            states = self.word_states(word)
            for s in states[:-1]:
                mask[s, s + 1] = True
        exits = self.final_states
        mask[np.ix_(exits, np.concatenate([[0], self.first_states]))] = True
        return mask

    def entry_arcs(self) -> np.ndarray:
        """``(C, C)`` boolean: the arcs that start a new word (into a first state, not a self-loop)."""
        entry = np.zeros((self.n_states, self.n_states), dtype=bool)
        entry[np.ix_(self.final_states, self.first_states)] = True
        return entry


__all__ = ["SIL", "UNITS", "AlignmentError", "Topology"]
