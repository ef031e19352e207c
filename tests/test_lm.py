import json

import numpy as np
import pytest
import torch

from asrguard.asr.ctc import greedy_decode
from asrguard.asr.lm import WordBigramLM, beam_search, default_lm_path, load_default_lm, make_decoder
from asrguard.errors import ConfigError
from asrguard.text import CHAR_TO_INDEX, CHARACTERS


def frames(*columns):
    """(T, C) log-probabilities: each frame a dict {char: prob}, the rest spread evenly."""
    rows = []
    for column in columns:
        row = np.full(len(CHARACTERS), 1e-4)
        for char, p in column.items():
            row[CHAR_TO_INDEX[char]] = p
        rows.append(np.log(row / row.sum()))
    return np.array(rows)


def test_bigram_probabilities_are_normalised_and_prefer_seen_words():
    lm = WordBigramLM.fit(["turn off the light", "off", "up", "go", "off"])
    vocab = list(lm.unigrams)
    for history in ("<s>", "off", "turn", "never-seen"):
        total = sum(np.exp(lm.log_prob(history, w)) for w in vocab)
        assert total < 1.0  # the rest is kept for unseen words
    assert lm.log_prob("<s>", "off") > lm.log_prob("<s>", "of")
    assert lm.log_prob("off", "</s>") > lm.log_prob("off", "off")
    # an unseen word is possible, and a longer one less so
    assert np.isfinite(lm.log_prob("<s>", "zyx")) and lm.log_prob("<s>", "zyx") > lm.log_prob("<s>", "zyxwv")
    with pytest.raises(ConfigError):
        WordBigramLM.fit(["", "  "])


def test_save_and_load_round_trip(tmp_path):
    lm = WordBigramLM.fit(["yes", "no", "go left"])
    path = lm.save(tmp_path / "lm.json")
    again = WordBigramLM.load(path)
    assert again.log_prob("go", "left") == lm.log_prob("go", "left")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError):
        WordBigramLM.load(tmp_path / "bad.json")


def test_beam_search_without_lm_matches_greedy_on_peaked_frames():
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids = rng.integers(0, len(CHARACTERS), size=20)
        lp = np.log(np.eye(len(CHARACTERS))[ids] * 0.97 + 0.03 / len(CHARACTERS))
        greedy = greedy_decode(torch.from_numpy(lp)[None], torch.tensor([20]))[0]
        assert beam_search(lp) == greedy


def test_language_model_repairs_a_near_miss_but_keeps_a_clear_word():
    lm = WordBigramLM.fit(["off"] * 20 + ["of course", "turn it off"] + ["up"] * 20)
    # acoustics say "of" (the second f is weaker than a blank), as greedy decoding would spell it
    near_miss = frames({"o": 0.9}, {"f": 0.9}, {"_": 0.55, "f": 0.45}, {"f": 0.5, "_": 0.5}, {"_": 0.9})
    assert greedy_decode(torch.from_numpy(near_miss)[None], torch.tensor([5]))[0] == "of"
    assert beam_search(near_miss, lm, alpha=0.5, beta=1.0) == "off"
    # without the LM the acoustics win
    assert beam_search(near_miss) == "of"
    clear = frames({"u": 0.95}, {"p": 0.95}, {"_": 0.95})
    assert beam_search(clear, lm) == "up"
    # an unseen word that the acoustics are sure of survives
    sure = frames({"z": 0.99}, {"_": 0.99}, {"o": 0.99})
    assert beam_search(sure, lm) == "zo"


def test_batch_decoder_and_bad_input():
    decode = make_decoder(None)
    lp = torch.log(torch.eye(len(CHARACTERS))[[0, 9, 9, 0, 10, 0]] * 0.97 + 0.03 / len(CHARACTERS))
    assert decode(torch.stack([lp, lp]), torch.tensor([6, 3])) == ["hi", "h"]
    with pytest.raises(ConfigError):
        beam_search(np.zeros((4, 5)))
    with pytest.raises(ConfigError):
        make_decoder(None, alpha=-1)


def test_shipped_lm_loads():
    lm = load_default_lm()
    assert {"yes", "no", "off", "left", "nine"} <= set(lm.unigrams)


def test_shipped_lm_is_fitted_on_training_transcripts_only(shared_data):
    from asrguard.asr.lm import training_sentences

    sentences = training_sentences(shared_data)
    rebuilt = WordBigramLM.fit(sentences)
    assert rebuilt.to_dict() == json.loads(default_lm_path().read_text())
    assert rebuilt.unigrams["</s>"] == len(sentences)  # one end per training sentence, nothing else


def test_asr_eval_with_the_lm_decoder(shared_data):
    from typer.testing import CliRunner

    from asrguard.cli import app

    result = CliRunner().invoke(app, ["asr-eval", "--corpus", "speech-commands", "--limit", "60", "--json",
                                      "--decoder", "lm", "--data-root", str(shared_data)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    greedy = json.loads(CliRunner().invoke(app, ["asr-eval", "--corpus", "speech-commands", "--limit", "60",
                                                 "--json", "--data-root", str(shared_data)]).output)
    assert metrics["decoder"] == "lm" and metrics["n_utterances"] == greedy["n_utterances"] == 60
    assert metrics["word_accuracy"] >= greedy["word_accuracy"]
    bad = CliRunner().invoke(app, ["asr-eval", "--decoder", "beam", "--data-root", str(shared_data)])
    assert bad.exit_code != 0 and "greedy or lm" in bad.output
