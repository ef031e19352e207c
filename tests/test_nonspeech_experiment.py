"""The non-speech report on a tiny model whose output layer is forced silent, or forced to talk."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asrguard.asr.ctc import CTCConfig, CTCRecognizer
from asrguard.errors import ConfigError
from asrguard.experiments.nonspeech import main, nonspeech_report
from asrguard.text import CHARACTERS


def _noise(seed, seconds=0.6, rate=16000):
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def _recognizer(favoured: str):
    torch.manual_seed(0)
    rec = CTCRecognizer(CTCConfig(dense_size=16, lstm_size=8))
    with torch.no_grad():
        rec.model.output.bias.zero_()
        rec.model.output.bias[CHARACTERS.index(favoured)] = 50.0  # this class wins every frame
    return rec


def test_a_silent_recogniser_is_empty_and_certain_and_a_talking_one_is_not():
    clips = [_noise(s) for s in range(4)]
    silent = nonspeech_report(_recognizer(CHARACTERS[0]), clips, n=5, limit=2)
    assert (silent["empty_transcripts"], silent["empty_fraction"]) == (4, 1.0)
    assert silent["mean_distinct_dropout_transcripts"] == 1.0 and silent["n_clips_dropout"] == 2
    talking = nonspeech_report(_recognizer("a"), clips, n=5, limit=None)
    assert talking["empty_transcripts"] == 0 and talking["n_clips_dropout"] == 4
    assert talking["most_common_transcripts"][0] == ("a", 4)
    with pytest.raises(ConfigError):
        nonspeech_report(_recognizer("a"), [], n=5)


def test_cli_reads_only_the_held_out_folds(tmp_path, capsys):
    subset = tmp_path / "data" / "urbansound8k_subset"
    rows = [("1-0-0-0.flac", "1", "1", "siren"), ("2-0-0-0.flac", "2", "2", "siren"), ("3-0-0-0.flac", "3", "10", "dog")]
    (subset / "audio").mkdir(parents=True)
    (subset / "metadata.csv").write_text("slice_file_name,fsID,fold,classID,class\n"
                                         + "".join(f"{n},{f},{fold},0,{c}\n" for n, f, fold, c in rows))
    for k, (name, _, fold, _) in enumerate(rows):
        (subset / "audio" / f"fold{fold}").mkdir(exist_ok=True)
        sf.write(subset / "audio" / f"fold{fold}" / name, _noise(k), 16000)
    model_dir = _recognizer(CHARACTERS[0]).save(tmp_path / "model")
    assert main(["--model", str(model_dir), "--data-root", str(tmp_path / "data"), "--n", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_clips"] == 2 and report["empty_transcripts"] == 2  # fold 2 is a training fold
