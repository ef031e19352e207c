"""Write a model card whose every figure is measured on the spot from the saved model."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from ..fileio import atomic_write_text
from . import recipes
from .ctc import DEFAULT_MODEL_DIR, CTCRecognizer
from .lm import load_default_lm, make_decoder
from .train import evaluate

EVAL_SETS = (
    ("fsdd-digits", "FSDD connected digits (1-7 digits) of the held-out FSDD speaker"),
    ("fsdd-isolated", "FSDD isolated digit recordings of the held-out FSDD speaker"),
    ("speech-commands", "Speech Commands word clips (10 commands + unknown words) of held-out speakers"),
    ("sc-digits", "connected digits (1-5) built from held-out Speech Commands speakers' digit words"),
)


def measure(model_dir: Path | None, data_root: Path | None = None) -> dict:
    recognizer = CTCRecognizer.load(model_dir)
    beam_lm = make_decoder(load_default_lm())
    results, results_lm = {}, {}
    for corpus, _ in EVAL_SETS:
        items = recipes.evaluation_set(corpus, "test", data_root)
        for decoder, store in ((None, results), (beam_lm, results_lm)):
            metrics = evaluate(recognizer, items, decoder=decoder)
            metrics["n_speakers"] = len(metrics.pop("speakers"))
            store[corpus] = metrics
    return {"checksum_sha256": recognizer.checksum, "n_parameters": recognizer.n_parameters(),
            "config": recognizer.config.__dict__, "training": recognizer.metadata.get("training", {}),
            "results": results, "results_lm": results_lm}


def write_model_card(model_dir: Path | None = None, data_root: Path | None = None) -> Path:
    """Evaluate the model on every held-out set and write ``MODEL_CARD.md`` + ``metrics.json`` beside it."""
    directory = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    report = measure(directory, data_root)
    atomic_write_text(directory / "metrics.json", json.dumps(report["results"], indent=2) + "\n")
    atomic_write_text(directory / "metrics_lm.json", json.dumps(report["results_lm"], indent=2) + "\n")
    training = report["training"]
    config = report["config"]
    train_config = training.get("config", {})
    prep_min = training.get("prep_seconds", 0.0) / 60
    train_min = training.get("train_seconds", 0.0) / 60
    def table(results: dict) -> str:
        return "\n".join(
            f"| {description} | {results[corpus]['n_utterances']} | {results[corpus]['n_speakers']} "
            f"| {results[corpus]['cer']:.2%} | {results[corpus]['wer']:.2%} "
            f"| {results[corpus]['word_accuracy']:.2%} | {results[corpus]['utterance_accuracy']:.2%} |"
            for corpus, description in EVAL_SETS
        )

    rows, rows_lm = table(report["results"]), table(report["results_lm"])
    history = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.3f} | {h['fsdd-digits']['cer']:.2%} | "
        f"{h['speech-commands']['word_accuracy']:.2%} | {h['seconds']:.0f} |"
        for h in training.get("history", [])
    )
    card = f"""# Model card: asrguard default CTC recogniser

A DeepSpeech-like character CTC recogniser (`asrguard.asr.ctc`): log-mel ({config['n_mels']} bands, {config['f_min']:g} Hz–{config['f_max'] / 1000:g} kHz),
per-utterance mean removal, ±{config['context']} frames of context, stride {config['stride']} (20 ms per output frame),
{config['n_dense']} clipped-ReLU dense layers of {config['dense_size']}, a bidirectional LSTM of {config['lstm_size']} per direction,
a dense layer and a softmax over blank, space, a–z and apostrophe. {report['n_parameters']:,} parameters.
Dropout after every non-LSTM layer, p_tr = {config['dropout']}; at inference it is off unless switched on
with `stochastic(p, seed=)` (the defence uses p = 0.1).

Weights: `model.safetensors`, SHA-256 `{report['checksum_sha256']}` (checked on load).

## Data
Trained only on speakers listed as *train* below; nothing of the held-out speakers is ever seen.
- FSDD (`../shared/data/fsdd`): isolated digits of 5 speakers (jackson, nicolas, yweweler, george, lucas),
  plus {train_config.get('n_connected_fsdd', '?')} connected-digit utterances (1–7 digits, one speaker each) drawn afresh every epoch.
  **Held out: `theo`.**
- Speech Commands v0.02 test set (`../shared/data/speech_commands_v0.02_test`): the ten command words and the
  `_unknown_` words of the training speakers, plus {train_config.get('n_connected_sc', '?')} connected-digit utterances per epoch
  built from their digit words. **Held out: 20 % of speakers by a stable hash** (`split_by_speaker(test_fraction=0.2, seed=0)`).
- Synthetic speech: {train_config.get('n_tts_sentences', '?')} command sentences × {train_config.get('tts_per_sentence', '?')} voices from
  flite (kal, kal16, awb, rms, slt) and espeak-ng (six voices), including "okay google unlock phone and delete files".
- Augmentation: speed 0.9–1.1, background noise / white noise at 5–35 dB SNR (p = 0.5), SpecAugment,
  random band-limiting to 4 kHz (p = {train_config.get('band_limit_probability', '?')}) so that 8 kHz FSDD and 16 kHz audio look alike.

## Held-out results
Measured by `asrguard model-card` (equivalently `asrguard asr-eval --corpus NAME --split test --json`).

| set | utterances | speakers | CER | WER | word accuracy (1 − WER) | exact match |
|---|---|---|---|---|---|---|
{rows}

Greedy decoding, as above, is what the attacks and the detector use. Decoded instead by prefix beam
search (16 beams) with the word bigram in `asrguard/assets/lm/default.json`, fitted on the training
transcripts only (LM weight 0.5, word bonus 1.0, chosen before measuring;
`asrguard asr-eval --corpus NAME --split test --json --decoder lm`):

| set | utterances | speakers | CER | WER | word accuracy (1 − WER) | exact match |
|---|---|---|---|---|---|---|
{rows_lm}

## Training
`asrguard train configs/ctc_default.json` on this project's machine (2 CPU cores, {platform.machine()},
torch {torch.__version__}): data preparation {prep_min:.1f} min, training {train_min:.1f} min,
{training.get('epoch', '?')} epochs. The run shared the two cores with other work, so this is an upper bound.

| epoch | train loss | fsdd-digits CER (subset) | speech-commands word acc (subset) | seconds |
|---|---|---|---|---|
{history}

## Limits
- Small vocabulary in practice: digits, command words and short command sentences. It can emit any
  lowercase character string, which the attacks use, but it is not a general-purpose recogniser.
- Only 5 FSDD speakers train the connected-digit task; the held-out FSDD figure rests on one speaker.
"""
    atomic_write_text(directory / "MODEL_CARD.md", card)
    return directory / "MODEL_CARD.md"
