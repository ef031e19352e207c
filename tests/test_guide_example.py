"""The guide's "wrap your own recogniser" example (docs/examples/own_recognizer.py) runs as documented.

It is loaded from its path, as a reader would run it; nothing in it is mocked.
"""

import doctest
import importlib.util
import math
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from asrguard.asr.base import AudioBatch, missing_capabilities

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "own_recognizer.py"
GUIDE = EXAMPLE.parents[1] / "guide.md"
EXCERPT_MARK = "# from docs/examples/own_recognizer.py\n"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("own_recognizer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outcome(example):
    return example.main(verbose=False)


def test_the_recogniser_has_every_capability_attacks_and_detectors_use(example):
    recognizer = example.ToneRecognizer()
    assert missing_capabilities(recognizer, "transcribe", "loss", "posteriors", "stochastic") == []
    assert recognizer.transcribe([example.speak("stop"), example.speak("the door", seed=3)]) == ["stop", "the door"]
    assert len(recognizer.fingerprint()) == 64


def test_the_loss_reaches_the_samples(example):
    recognizer = example.ToneRecognizer()
    batch = AudioBatch.from_waveforms([example.speak("open")], example.SAMPLE_RATE)
    waveforms = batch.waveforms.clone().requires_grad_(True)
    loss = recognizer.loss(batch.with_waveforms(waveforms), ["stop"])
    loss.sum().backward()
    assert loss.shape == (1,) and torch.isfinite(loss).all()
    assert torch.isfinite(waveforms.grad).all() and waveforms.grad.abs().sum() > 0


def test_realisations_repeat_from_their_seed_and_vary_with_it(example):
    recognizer = example.ToneRecognizer()
    audio = example.speak("open")
    first, again = recognizer.realizations(audio, 20, seed=5), recognizer.realizations(audio, 20, seed=5)
    other = recognizer.realizations(audio, 20, seed=6)
    assert first.transcripts == again.transcripts and torch.equal(first.log_probs, again.log_probs)
    assert first.log_probs.shape == (20, first.length, len(recognizer.vocabulary))
    assert not torch.equal(first.log_probs, other.log_probs)
    assert recognizer.transcribe([audio]) == ["open"]  # the context leaves no dropout behind


def test_the_cw_attack_reaches_the_target_within_its_bound(outcome):
    result, source, bound = outcome["result"], outcome["source"], outcome["bound"]
    assert result.success and result.transcript == "open the door"
    assert result.waveform.shape == source.shape and np.all(np.isfinite(result.waveform))
    delta = result.waveform.astype(np.float64) - source
    assert 0 < np.abs(delta).max() <= bound
    assert result.db_x_delta <= -15.0  # the example's tau_db


def test_the_detector_returns_finite_scores_and_verdicts(outcome):
    for explanation in (outcome["clean"], outcome["adversarial"]):
        assert math.isfinite(explanation["score"]) and math.isfinite(explanation["threshold"])
        assert explanation["verdict"] in ("benign", "adversarial")
        assert explanation["adversarial"] == (explanation["score"] > explanation["threshold"])
        assert sum(item["count"] for item in explanation["distinct"]) == 30
    # what the example prints: the clean input passes and the adversarial one is flagged
    assert outcome["clean"]["verdict"] == "benign" and outcome["adversarial"]["verdict"] == "adversarial"
    assert outcome["reloaded_score"] == pytest.approx(outcome["adversarial"]["score"])


def test_the_examples_in_its_docstrings_hold(example):
    failed, attempted = doctest.testmod(example)
    assert attempted >= 3 and failed == 0


def test_it_runs_as_a_script(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = capsys.readouterr().out
    assert "'open the door'" in printed and "-> adversarial" in printed


def test_the_guide_quotes_the_example_verbatim():
    blocks = re.findall(r"```python\n(.*?)\n```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    excerpts = [b[len(EXCERPT_MARK):] for b in blocks if b.startswith(EXCERPT_MARK)]
    source = EXAMPLE.read_text(encoding="utf-8")
    assert len(excerpts) >= 2
    for excerpt in excerpts:
        for piece in excerpt.split("\n...\n"):  # "..." on its own line elides code between pieces
            assert piece in source, f"the guide quotes code the example no longer has:\n{piece}"
