"""Recognition metrics on hand-made transcripts: WER bookkeeping and where the errors are."""

import pytest

from asrguard.evaluate.metrics import recognition_metrics, word_errors


def test_word_errors_count_every_alignment_kind():
    references = ["off", "off", "go left", "turn on the light", "up", ""]
    hypotheses = ["of", "off", "no left", "now turn on light", "", "noise"]
    errors = word_errors(references, hypotheses)
    assert errors["per_word"]["off"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert errors["per_word"]["left"] == {"n": 1, "correct": 1, "accuracy": 1.0}
    assert sorted(map(tuple, errors["substitutions"])) == [("go", "no", 1), ("off", "of", 1)]
    assert sorted(map(tuple, errors["deletions"])) == [("the", 1), ("up", 1)]
    assert errors["insertions"] == [["now", 1]]
    # the empty reference is skipped, as WER skips it: "noise" is no insertion
    assert sum(e["n"] for e in errors["per_word"].values()) == 9
    # the counts agree with WER: errors / reference words
    wrong = sum(e["n"] - e["correct"] for e in errors["per_word"].values()) + len(errors["insertions"])
    assert recognition_metrics(references, hypotheses)["wer"] == pytest.approx(wrong / 9)


def test_word_errors_order_worst_first_and_do_not_depend_on_input_order():
    references = ["stop", "stop", "go", "go", "go", "yes"]
    hypotheses = ["top", "ston", "no", "go", "no", "yes"]
    errors = word_errors(references, hypotheses, top=2)
    assert list(errors["per_word"]) == ["stop", "go", "yes"]
    assert errors["substitutions"] == [["go", "no", 2], ["stop", "ston", 1]]
    assert word_errors(references[::-1], hypotheses[::-1], top=2) == errors


def test_word_errors_reject_mismatched_lengths_and_survive_no_words():
    with pytest.raises(ValueError):
        word_errors(["a"], [])
    assert word_errors([""], ["x"]) == {"per_word": {}, "substitutions": [], "deletions": [], "insertions": []}
