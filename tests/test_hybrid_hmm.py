"""Digit-loop HMM: topology, transition estimation, Viterbi decoding, forced alignment."""

import numpy as np
import pytest

from asrguard.asr.hybrid.hmm import DigitHMM
from asrguard.asr.hybrid.topology import AlignmentError, Topology
from asrguard.errors import ConfigError


def _path_from_words(hmm, words_with_frames, n_frames):
    """Ground-truth state path: silence, then each word's states spread over its frames."""
    return hmm.linear_alignment(n_frames, words_with_frames)


def _emissions_for(path, n_states, rng, strength=4.0, noise=1.0):
    e = rng.normal(0.0, noise, size=(len(path), n_states))
    e[np.arange(len(path)), path] += strength
    return e


def test_topology_has_95_states_left_to_right():
    topo = Topology()
    assert topo.n_states == 95
    sizes = {w: len(topo.word_states(w)) for w in topo.words}
    assert sizes == {"oh": 6, "zero": 10, "one": 10, "two": 6, "three": 9, "four": 9, "five": 9,
                     "six": 10, "seven": 10, "eight": 6, "nine": 9}
    allowed = topo.allowed()
    for w in topo.words:
        states = list(topo.word_states(w))
        for s in states[:-1]:  # inside a word: only self-loop and next state
            assert set(np.flatnonzero(allowed[s])) == {s, s + 1}


def test_every_transition_row_sums_to_one():
    hmm = DigitHMM.default()
    np.testing.assert_allclose(hmm.transition_matrix().sum(axis=1), 1.0, atol=1e-9)
    rng = np.random.default_rng(0)
    paths = []
    for _ in range(20):
        words = rng.choice(["one", "two", "five", "zero"], size=rng.integers(1, 4))
        spans, t = [], 3
        for w in words:
            n = int(rng.integers(12, 30))
            spans.append((w, t, t + n))
            t += n + int(rng.integers(0, 4))
        paths.append(hmm.linear_alignment(t + 3, spans))
    hmm.fit(paths)
    probs = hmm.transition_matrix()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert probs.max() <= 1.0
    assert set(hmm.vocabulary) == {"one", "two", "five", "zero"}
    # smoothing keeps every allowed arc possible, and nothing is put on forbidden arcs
    allowed = hmm.topology.allowed()
    assert np.all(probs[allowed] > 0) and np.all(probs[~allowed] == 0)


def test_fit_refuses_illegal_arcs():
    hmm = DigitHMM.default()
    two = hmm.topology.word_states("two")
    with pytest.raises(ConfigError):
        hmm.fit([np.array([0, two[0], two[2]])])  # skips a state


def test_viterbi_decodes_a_known_state_path():
    hmm = DigitHMM.default()
    rng = np.random.default_rng(1)
    truth = _path_from_words(hmm, [("three", 5, 30), ("one", 34, 60), ("one", 60, 85), ("eight", 90, 110)], 118)
    emissions = _emissions_for(truth, hmm.n_states, rng)
    (path,) = hmm.viterbi(emissions)
    np.testing.assert_array_equal(path, truth)
    assert hmm.words_of_path(path) == ["three", "one", "one", "eight"]


def test_viterbi_batch_respects_lengths():
    hmm = DigitHMM.default()
    rng = np.random.default_rng(2)
    a = _path_from_words(hmm, [("two", 4, 20)], 26)
    b = _path_from_words(hmm, [("nine", 3, 25), ("four", 28, 50)], 55)
    e = np.full((2, 55, hmm.n_states), 0.0)
    e[0, :26] = _emissions_for(a, hmm.n_states, rng)
    e[0, 26:] = rng.normal(size=(29, hmm.n_states)) * 10  # garbage in the padding
    e[1] = _emissions_for(b, hmm.n_states, rng)
    pa, pb = hmm.viterbi(e, lengths=[26, 55])
    np.testing.assert_array_equal(pa, a)
    np.testing.assert_array_equal(pb, b)


def test_insertion_penalty_and_vocabulary():
    hmm = DigitHMM.default()
    rng = np.random.default_rng(3)
    e = rng.normal(size=(200, hmm.n_states)) * 3  # pure noise: many spurious words
    many = len(hmm.words_of_path(hmm.viterbi(e)[0]))
    hmm.insertion_penalty = 200.0
    few = len(hmm.words_of_path(hmm.viterbi(e)[0]))
    assert few < many
    hmm.insertion_penalty = 0.0
    hmm.vocabulary = ("two",)
    words = hmm.words_of_path(hmm.viterbi(e)[0])
    assert set(words) <= {"two"}


def test_forced_alignment_recovers_word_boundaries():
    """Emissions only say which *word* a frame belongs to (noisily); alignment must find the
    boundaries the utterance was built with to within 2 frames."""
    hmm = DigitHMM.default()
    rng = np.random.default_rng(4)
    spans = [("seven", 6, 40), ("two", 47, 63), ("zero", 63, 95), ("nine", 104, 131)]
    n_frames = 140
    truth = _path_from_words(hmm, spans, n_frames)
    unit = hmm.topology.state_unit
    e = rng.normal(0.0, 1.0, size=(n_frames, hmm.n_states))
    e += 3.0 * (unit[truth][:, None] == unit[None, :])  # favour every state of the right unit
    # within a word, favour earlier states early and later states late (but only weakly)
    for word, start, end in spans:
        ids = np.array(hmm.topology.word_states(word))
        for t in range(start, end):
            frac = (t - start) / (end - start)
            e[t, ids] += -2.0 * np.abs(np.linspace(0, 1, len(ids)) - frac)
    path = hmm.align(e, [w for w, _, _ in spans])
    found = [(w, s, t) for w, s, t in hmm.segments(path) if w != "sil"]
    assert [w for w, _, _ in found] == [w for w, _, _ in spans]
    for (_, s0, e0), (_, s1, e1) in zip(spans, found):
        assert abs(s0 - s1) <= 2 and abs(e0 - e1) <= 2
    # the alignment is a legal path: starts in silence, uses only allowed arcs
    assert path[0] == 0
    allowed = hmm.topology.allowed()
    assert np.all(allowed[path[:-1], path[1:]])


def test_forced_alignment_without_silence_and_too_short():
    hmm = DigitHMM.default()
    rng = np.random.default_rng(5)
    truth = _path_from_words(hmm, [("one", 3, 20), ("two", 20, 32)], 35)
    path = hmm.align(_emissions_for(truth, hmm.n_states, rng), "one two", optional_sil=False)
    assert hmm.words_of_path(path) == ["one", "two"]
    with pytest.raises(AlignmentError):
        hmm.align(np.zeros((10, hmm.n_states)), ["seven", "seven"])
    with pytest.raises(AlignmentError):
        hmm.align(np.zeros((50, hmm.n_states)), ["eleven"])


def test_state_roundtrip():
    hmm = DigitHMM.default(insertion_penalty=1.5, vocabulary=("one", "two"))
    again = DigitHMM.from_state(hmm.config(), hmm.state_dict())
    np.testing.assert_array_equal(again.log_trans, hmm.log_trans)
    assert again.insertion_penalty == 1.5 and again.vocabulary == ("one", "two")
