"""Training recipe for the CTC recogniser: data assembly, augmentation, resumable loop.

``asrguard train configs/ctc_default.json`` runs :func:`train`. Each epoch ends with an
atomic checkpoint (weights, optimiser state, history); running the same command again
resumes from it. CER / WER on the held-out speakers are logged every epoch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from ..audio import DEFAULT_SAMPLE_RATE, load_audio
from ..data import tts
from ..data.records import Utterance
from ..errors import ConfigError
from ..evaluate.metrics import recognition_metrics, word_errors
from ..text import encode
from . import recipes
from .base import AudioBatch
from ..fileio import atomic_write, atomic_write_text
from .ctc import CTCConfig, CTCRecognizer, DeepSpeechCTC

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data_root: str | None = None          # None: recipes.default_data_root()
    out_dir: str = "runs/ctc_default"
    tts_dir: str | None = "cache/tts"      # None disables synthetic speech
    n_tts_sentences: int = 700
    tts_per_sentence: int = 2
    n_connected_fsdd: int = 2500           # regenerated every epoch from a new seed
    n_connected_sc: int = 600
    speech_commands_repeats: int = 1       # word clips appear this many times per epoch (augmented anew)
    # non-speech with an empty transcript, so the model learns to stay silent on noise instead of
    # transcribing it (which also makes its dropout transcripts of noise vary, hurting detection)
    urbansound_repeats: int = 0            # UrbanSound8K training-fold clips, this many times per epoch
    n_noise_only: int = 0                  # crops of the background-noise bank per epoch
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1.5e-3
    weight_decay: float = 1e-5
    max_minutes: float | None = 28.0       # stop early (after an epoch) past this budget
    seed: int = 0
    speed_range: tuple[float, float] = (0.9, 1.1)
    band_limit_probability: float = 0.4     # 8 kHz FSDD vs 16 kHz data: teach both bandwidths
    noise_probability: float = 0.5
    snr_range_db: tuple[float, float] = (5.0, 35.0)
    freq_masks: int = 2
    freq_mask_width: int = 6
    time_masks: int = 2
    time_mask_fraction: float = 0.1
    eval_limit: int = 400                   # utterances per held-out set per epoch
    bf16_autocast: bool = True              # 2-3x faster on CPUs with avx512_bf16; weights stay fp32
    model: dict = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read training config ({exc})") from None
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**values)


# ──────────────────────────────────────────────────────────────────────────────
# Data
# ──────────────────────────────────────────────────────────────────────────────


def tts_items(config: TrainConfig, root: Path) -> list[Utterance]:
    """Synthetic command sentences from the offline TTS engines (cached; empty if none installed)."""
    if not config.tts_dir:
        return []
    if not tts.available_tts_engines():
        log.warning("no offline TTS engine (flite / espeak-ng) found; training without synthetic speech")
        return []
    sentences = tts.default_sentences(seed=config.seed, n=config.n_tts_sentences)
    records = tts.build_tts_corpus(sentences, Path(config.tts_dir), seed=config.seed,
                                   per_sentence=config.tts_per_sentence)
    return recipes.load_records(records)


def assemble_static_training_set(config: TrainConfig, root: Path):
    """Everything but the per-epoch connected digits, plus the clip pools those are built from."""
    fsdd = recipes.fsdd_records(root, "train")
    sc = recipes.speech_commands_records(root, "train")
    items = (recipes.load_records(fsdd) + recipes.load_records(sc) * config.speech_commands_repeats
             + tts_items(config, root))
    if config.urbansound_repeats:
        items += recipes.load_records(recipes.urbansound_records(root, "train")) * config.urbansound_repeats
    return items, fsdd, sc


def noise_only_items(noises: list[np.ndarray], n: int, rng: np.random.Generator,
                     sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[Utterance]:
    """``n`` crops (0.5-3 s, gain -40 to -6 dB peak) of the noise bank, each transcribed as nothing."""
    items = []
    for k in range(n if noises else 0):
        noise = noises[rng.integers(len(noises))]
        length = min(len(noise), int(rng.uniform(0.5, 3.0) * sample_rate))
        start = rng.integers(0, len(noise) - length + 1)
        crop = noise[start:start + length]
        peak = float(np.max(np.abs(crop))) or 1.0
        crop = (crop * (10 ** (rng.uniform(-40.0, -6.0) / 20) / peak)).astype(np.float32)
        items.append(Utterance.from_waveform(f"noise-only:{k}", crop, sample_rate, speaker="noise", source="noise"))
    return items


def noise_bank(root: Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[np.ndarray]:
    """Background-noise clips from Speech Commands ``_silence_`` (empty list if absent)."""
    folder = root / "speech_commands_v0.02_test" / "_silence_"
    clips = []
    for path in sorted(folder.glob("*"))[:200] if folder.exists() else []:
        if path.suffix.lower() in (".wav", ".flac"):
            clip, _ = load_audio(path, sample_rate)
            if np.max(np.abs(clip)) > 0:
                clips.append(clip)
    return clips


# ──────────────────────────────────────────────────────────────────────────────
# Augmentation
# ──────────────────────────────────────────────────────────────────────────────


def change_speed(waveform: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like sox ``speed``)."""
    if abs(factor - 1.0) < 1e-3:
        return waveform
    new_length = max(1, int(round(len(waveform) / factor)))
    tensor = torch.from_numpy(waveform)[None, None]
    return F.interpolate(tensor, size=new_length, mode="linear", align_corners=False)[0, 0].numpy()


def band_limit(waveform: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Remove everything above ``cutoff_hz`` (FFT brick wall), so 16 kHz speech looks like 8 kHz speech."""
    spectrum = np.fft.rfft(waveform)
    spectrum[int(len(waveform) * cutoff_hz / sample_rate) + 1:] = 0
    return np.fft.irfft(spectrum, n=len(waveform)).astype(np.float32)


def add_noise(waveform: np.ndarray, rng: np.random.Generator, noises: list[np.ndarray],
              snr_db: float) -> np.ndarray:
    if noises and rng.random() < 0.7:
        noise = noises[rng.integers(len(noises))]
        reps = int(math.ceil(len(waveform) / len(noise)))
        noise = np.tile(noise, reps)
        start = rng.integers(0, len(noise) - len(waveform) + 1)
        noise = noise[start:start + len(waveform)]
    else:
        noise = rng.standard_normal(len(waveform)).astype(np.float32)
    signal_power = float(np.mean(waveform ** 2)) + 1e-10
    noise_power = float(np.mean(noise ** 2)) + 1e-10
    scale = math.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return np.clip(waveform + scale * noise, -1.0, 1.0).astype(np.float32)


class SpecAugment:
    """Frequency and time masks on normalised features (masked values set to the mean, 0)."""

    def __init__(self, config: TrainConfig):
        self.config = config

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch, n_time, n_feat = features.shape
        lengths = lengths.to(features.device)[:, None]
        # all masks drawn at once: per-utterance Python loops cost ~3 ms a training step. Drawn from
        # torch's global RNG, which train() seeds every epoch: the shipped model's training depends on it
        f_width = torch.randint(0, c.freq_mask_width + 1, (batch, c.freq_masks))
        f_start = (torch.rand(batch, c.freq_masks) * (n_feat - f_width).clamp(min=1)).long()
        max_width = (c.time_mask_fraction * lengths).long().clamp(min=1)
        t_width = (torch.rand(batch, c.time_masks) * (max_width + 1)).long()
        t_start = (torch.rand(batch, c.time_masks) * (lengths - t_width).clamp(min=1)).long()

        def covered(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
            position = torch.arange(size)[None, None, :]
            inside = (position >= start[..., None]) & (position < (start + width)[..., None])
            return inside.any(dim=1)  # (batch, size)

        dropped = covered(f_start, f_width, n_feat)[:, None, :] | covered(t_start, t_width, n_time)[:, :, None]
        return features.masked_fill(dropped.to(features.device), 0.0)


# ──────────────────────────────────────────────────────────────────────────────
# Loop
# ──────────────────────────────────────────────────────────────────────────────


def make_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (sorted inside pools of 50 batches) to limit padding."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def estimate_feature_std(model: DeepSpeechCTC, items, n: int = 300) -> torch.Tensor:
    with torch.no_grad():
        rows = []
        for item in items[:: max(1, len(items) // n)]:
            waveform = torch.from_numpy(item.waveform)[None]
            logmel = model.logmel(waveform)[0]
            rows.append(logmel - logmel.mean(0, keepdim=True))
        return torch.cat(rows).std(0).clamp_min(1e-3)


def evaluate(recognizer: CTCRecognizer, items, batch_size: int = 32, decoder=None, details: bool = False) -> dict:
    """Recognition metrics on ``items``; ``decoder(log_probs, lengths)`` replaces greedy decoding.

    ``details`` adds ``word_errors`` (:func:`~asrguard.evaluate.metrics.word_errors`): accuracy
    per reference word and the most frequent confusions.
    """
    hypotheses = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = AudioBatch.from_waveforms([i.waveform for i in chunk], recognizer.sample_rate, validate=False)
        if decoder is None:
            hypotheses.extend(recognizer.transcribe(batch))
        else:
            with torch.no_grad():
                hypotheses.extend(decoder(*recognizer.log_probs(batch)))
    references = [i.transcript for i in items]
    metrics = recognition_metrics(references, hypotheses)
    metrics["speakers"] = sorted({i.speaker for i in items})
    if details:
        metrics["word_errors"] = word_errors(references, hypotheses)
    return metrics


def train(config: TrainConfig, progress: bool = True) -> CTCRecognizer:
    """Train (or resume) the CTC recogniser described by ``config``; returns the final model."""
    started = time.monotonic()
    root = Path(config.data_root) if config.data_root else recipes.default_data_root()
    out_dir = Path(config.out_dir)
    checkpoint = out_dir / "checkpoint"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)  # weight init; training seeds the global RNG, nothing else does

    model_config = CTCConfig(**config.model)
    model = DeepSpeechCTC(model_config)
    model.spec_augment = SpecAugment(config)
    recognizer = CTCRecognizer(model_config, model)

    static_items, fsdd_train, sc_train = assemble_static_training_set(config, root)
    noises = noise_bank(root)
    held_out = {
        "fsdd-digits": recipes.evaluation_set("fsdd-digits", "test", root, limit=min(config.eval_limit, 300)),
        "speech-commands": recipes.evaluation_set("speech-commands", "test", root, limit=config.eval_limit),
    }
    prep_seconds = time.monotonic() - started
    log.info("training set: %d static utterances, %d noise clips, prepared in %.0f s",
             len(static_items), len(noises), prep_seconds)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    state = {"epoch": 0, "history": [], "train_seconds": 0.0, "prep_seconds": prep_seconds}
    if (checkpoint / "train_state.json").exists():
        state = json.loads((checkpoint / "train_state.json").read_text())
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors")))
        _load_optimizer(optimizer, load_file(str(checkpoint / "optimizer.safetensors")))
        log.info("resuming after epoch %d", state["epoch"])
    else:
        model.feature_std.copy_(estimate_feature_std(model, static_items))

    steps_per_epoch = None
    total_steps = None
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if config.max_minutes and state["train_seconds"] / 60 >= config.max_minutes:
            log.info("time budget of %.0f min reached; stopping", config.max_minutes)
            break
        epoch_start = time.monotonic()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1000 + epoch)  # SpecAugment and training_dropout; frozen (rng.py)
        items = (static_items
                 + recipes.connected_digits(fsdd_train, config.n_connected_fsdd, seed=10_000 + epoch)
                 + recipes.connected_digits(sc_train, config.n_connected_sc, seed=20_000 + epoch, max_digits=5)
                 + noise_only_items(noises, config.n_noise_only, np.random.default_rng([config.seed, epoch, 1])))
        batches = make_batches([len(i.waveform) for i in items], config.batch_size, rng)
        steps_per_epoch = steps_per_epoch or len(batches)
        total_steps = total_steps or steps_per_epoch * config.epochs
        model.train()
        losses = []
        with Progress(TextColumn(f"epoch {epoch}/{config.epochs}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                      disable=not progress, transient=True) as bar:
            task = bar.add_task("train", total=len(batches), loss=float("nan"))
            for step, batch_index in enumerate(batches):
                global_step = (epoch - 1) * steps_per_epoch + step
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(config.learning_rate, global_step, total_steps, steps_per_epoch)
                waveforms, texts = [], []
                for i in batch_index:
                    w = change_speed(items[i].waveform, rng.uniform(*config.speed_range))
                    if rng.random() < config.band_limit_probability:
                        w = band_limit(w, model_config.sample_rate, rng.uniform(3400.0, 4000.0))
                    if rng.random() < config.noise_probability:
                        w = add_noise(w, rng, noises, rng.uniform(*config.snr_range_db))
                    waveforms.append(w)
                    texts.append(items[i].transcript)
                batch = AudioBatch.from_waveforms(waveforms, model_config.sample_rate, validate=False)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16_autocast):
                    log_probs, lengths = model(batch.waveforms, batch.lengths)
                log_probs = log_probs.float()
                targets = [torch.tensor(encode(t), dtype=torch.long) for t in texts]
                loss = F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), lengths,
                                  torch.tensor([len(t) for t in targets]), blank=0,
                                  reduction="mean", zero_infinity=True)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                losses.append(loss.item())
                bar.update(task, advance=1, loss=float(np.mean(losses[-50:])))
        model.eval()
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                  "seconds": time.monotonic() - epoch_start}
        for name, eval_items in held_out.items():
            metrics = evaluate(recognizer, eval_items)
            record[name] = {k: metrics[k] for k in ("cer", "wer", "word_accuracy", "n_utterances")}
        state["train_seconds"] += time.monotonic() - epoch_start
        state["epoch"] = epoch
        state["history"].append(record)
        _save_checkpoint(checkpoint, recognizer, optimizer, state, config)
        log.info("epoch %d: loss %.3f | fsdd-digits CER %.3f | speech-commands word acc %.3f | %.0f s",
                 epoch, record["train_loss"], record["fsdd-digits"]["cer"],
                 record["speech-commands"]["word_accuracy"], record["seconds"])
    metadata = {"training": {**state, "config": asdict(config)}}
    recognizer.metadata.update(metadata)
    recognizer.save(out_dir / "model")
    return recognizer


def _learning_rate(peak: float, step: int, total: int, warmup: int) -> float:
    """Linear warm-up over the first epoch, then cosine decay to 5 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_checkpoint(directory: Path, recognizer: CTCRecognizer, optimizer, state: dict,
                     config: TrainConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    flat = {}
    for key, value in optimizer.state_dict()["state"].items():
        for name, tensor in value.items():
            flat[f"{key}.{name}"] = torch.as_tensor(tensor).detach().clone().contiguous()
    atomic_write(directory / "optimizer.safetensors", lambda tmp: save_file(flat, tmp))
    state_dict = {k: v.contiguous() for k, v in recognizer.model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state_dict, tmp))
    # written last: its presence marks the checkpoint as complete
    atomic_write_text(directory / "train_state.json", json.dumps({**state, "config": asdict(config)}, indent=1))


def _load_optimizer(optimizer, flat: dict) -> None:
    state_dict = optimizer.state_dict()
    restored = {}
    for key, tensor in flat.items():
        index, name = key.split(".", 1)
        restored.setdefault(int(index), {})[name] = tensor
    state_dict["state"] = restored
    optimizer.load_state_dict(state_dict)


__all__ = ["TrainConfig", "train", "evaluate", "change_speed", "band_limit", "add_noise", "noise_only_items",
           "SpecAugment"]
