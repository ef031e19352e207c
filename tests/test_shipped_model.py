"""The shipped model on real held-out speakers (skipped on a machine without ../shared/data)."""

import json

import pytest
from typer.testing import CliRunner

from asrguard.asr import recipes
from asrguard.asr.ctc import DEFAULT_MODEL_DIR, CTCRecognizer
from asrguard.asr.train import evaluate
from asrguard.cli import app


def test_shipped_model_loads_and_has_a_card():
    recognizer = CTCRecognizer.load()
    assert recognizer.checksum and recognizer.n_parameters() > 100_000
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert "theo" in card and "Held-out results" in card


def test_shipped_model_on_held_out_fsdd_connected_digits(shared_data):
    items = recipes.evaluation_set("fsdd-digits", "test", shared_data, limit=80)
    assert {i.speaker for i in items} == {"fsdd:theo"}
    metrics = evaluate(CTCRecognizer.load(), items)
    assert metrics["cer"] < 0.06, metrics  # model card: 2.9 % on all 300


def test_asr_eval_json_contract(shared_data):
    result = CliRunner().invoke(app, ["asr-eval", "--corpus", "speech-commands", "--split", "test",
                                      "--limit", "60", "--json", "--data-root", str(shared_data)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"cer", "wer", "word_accuracy", "n_utterances", "speakers"} <= report.keys()
    assert report["n_utterances"] == 60 and report["word_accuracy"] > 0.6
    train_speakers = {r.speaker for r in recipes.speech_commands_records(shared_data, "train")}
    assert not train_speakers & set(report["speakers"])


def test_asr_eval_details_say_which_words_fail(shared_data):
    args = ["asr-eval", "--corpus", "speech-commands", "--limit", "60", "--data-root", str(shared_data), "--details"]
    report = json.loads(CliRunner().invoke(app, args + ["--json"]).stdout)
    errors = report["word_errors"]
    assert sum(e["n"] for e in errors["per_word"].values()) == 60  # one word per Speech Commands clip
    wrong = sum(e["n"] - e["correct"] for e in errors["per_word"].values())
    # a clip is wrong when its word is, or when words were inserted around it
    assert 0 < wrong <= round((1 - report["utterance_accuracy"]) * 60)
    assert sum(c for *_, c in errors["substitutions"]) <= wrong
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0 and "worst words" in text.stdout


@pytest.mark.parametrize("corpus", ["fsdd-digits", "speech-commands"])
def test_held_out_sets_are_deterministic(corpus, shared_data):
    a = recipes.evaluation_set(corpus, "test", shared_data, limit=5)
    b = recipes.evaluation_set(corpus, "test", shared_data, limit=5)
    assert [x.id for x in a] == [x.id for x in b]
