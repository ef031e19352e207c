"""Wrap your own recogniser: a complete, runnable example.

:class:`ToneRecognizer` hears a toy language in which every character is a pure tone (``"o"``
is 2000 Hz, ``"p"`` 2200 Hz, ...), spoken for 100 ms with 50 ms of silence after it. A tiny
torch model scores 25 ms frames against one spectral template per character and is decoded
greedily as CTC. It implements the capabilities that attacks and detectors ask for
(:mod:`asrguard.asr.base`):

* ``transcribe``: ``sample_rate``, ``transcribe``, ``fingerprint``, ``normalize_text``;
* ``loss``: ``loss`` (CTC toward a target, differentiable in the samples), ``target_fits``;
* ``stochastic``: ``stochastic`` (dropout on the spectral features) and seeded ``realizations``;
* ``posteriors`` comes free with them: ``log_probs``, ``decode``, ``vocabulary``.

:func:`main` crafts a Carlini & Wagner example toward a target and scores it, with the clean
input, by a one-class detector fitted on a few benign utterances. Run it with
``python docs/examples/own_recognizer.py`` (a few seconds on a laptop CPU).

Example:
    >>> recognizer = ToneRecognizer()
    >>> recognizer.transcribe([speak("open")])
    ['open']
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from asrguard import AudioBatch, CWAttack, CWConfig, Detector, FeatureExtractor, Realizations, Recognizer
from asrguard.detect.classifiers import make_classifier
from asrguard.rng import require_seed

SAMPLE_RATE = 16000
FRAME = 400  # 25 ms frames, not overlapping: FFT bins are 40 Hz apart
BLANK = "_"
ALPHABET = " adehlnoprst"  # the characters the toy language has, after the CTC blank
TONE_SECONDS, GAP_SECONDS = 0.1, 0.05
DEFAULT_P = 0.1  # dropout rate of stochastic() when none is given


def tone_hz(symbol: str) -> float:
    """Frequency of one character: 200 Hz apart (5 FFT bins), from 600 Hz for the space."""
    return 400.0 + 200.0 * (ALPHABET.index(symbol) + 1)


def speak(text: str, *, seed: int = 0, pause_seconds: float = 0.3, amplitude: float = 0.5) -> np.ndarray:
    """Audio of ``text`` in the toy language, with a little noise and ``pause_seconds`` of silence after.

    Example:
        >>> speak("stop").shape
        (14400,)
    """
    rng = np.random.default_rng(seed)
    tone = np.arange(int(TONE_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    pieces = []
    for symbol in text:
        pieces += [amplitude * np.sin(2 * np.pi * tone_hz(symbol) * tone), np.zeros(int(GAP_SECONDS * SAMPLE_RATE))]
    pieces.append(np.zeros(int(pause_seconds * SAMPLE_RATE)))
    audio = np.concatenate(pieces)
    return (audio + 0.01 * rng.standard_normal(audio.size)).clip(-1, 1).astype(np.float32)


class TemplateScorer(torch.nn.Module):
    """Log-spectrum of a frame -> CTC log-posteriors: one Gaussian bump per character, a fixed blank."""

    def __init__(self, gain: float = 4.0, blank_logit: float = 6.0):
        super().__init__()
        n_bins = FRAME // 2 + 1
        bins = torch.arange(n_bins, dtype=torch.float32)
        centres = torch.tensor([tone_hz(s) * FRAME / SAMPLE_RATE for s in ALPHABET])
        bumps = torch.exp(-0.5 * (bins[None, :] - centres[:, None]) ** 2)
        templates = torch.cat([torch.zeros(1, n_bins), gain * bumps / bumps.sum(1, keepdim=True)])
        self.linear = torch.nn.Linear(n_bins, len(ALPHABET) + 1)
        with torch.no_grad():
            self.linear.weight.copy_(templates)
            self.linear.bias.zero_()
            self.linear.bias[0] = blank_logit  # silence and quiet noise stay blank

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.linear(features), dim=-1)


class ToneRecognizer(Recognizer):
    """A recogniser for the toy tone language, behind asrguard's Recognizer interface.

    Example:
        >>> batch = AudioBatch.from_waveforms([speak("stop", pause_seconds=0)] * 3, SAMPLE_RATE)  # 24 frames
        >>> ToneRecognizer().target_fits(batch, ["open", "xyz", "open the door and read the post"])
        [True, False, False]
    """

    sample_rate = SAMPLE_RATE
    vocabulary = (BLANK, *ALPHABET)

    def __init__(self):
        self.model = TemplateScorer().eval()
        self.window = torch.hann_window(FRAME)
        self._dropout_p: float | None = None
        self._generator: torch.Generator | None = None
        # Detector.save records this and Detector.load refuses another recogniser's detector
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode() + tensor.numpy().tobytes())
        self.checksum = digest.hexdigest()

    # --- the model ---------------------------------------------------------------------
    def _features(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-magnitude spectra ``(B, T, bins)`` of whole frames, and frame counts ``(B,)``."""
        self._check_rate(batch)
        n_frames = batch.lengths // FRAME
        usable = max(int(n_frames.max()), 1) * FRAME
        samples = batch.waveforms * batch.mask()  # padding must not leak into any frame
        samples = F.pad(samples, (0, max(usable - samples.shape[1], 0)))[:, :usable]
        spectrum = torch.fft.rfft(samples.reshape(len(batch), -1, FRAME) * self.window)
        # the small floor keeps the gradient finite where a bin is exactly zero
        magnitude = torch.sqrt(spectrum.real ** 2 + spectrum.imag ** 2 + 1e-8)
        return torch.log1p(magnitude), n_frames

    def _dropout(self, features: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
        keep = torch.rand(features.shape, generator=generator) >= p
        return features * keep / (1.0 - p)

    def log_probs(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        features, n_frames = self._features(batch)
        if self._dropout_p:
            features = self._dropout(features, self._dropout_p, self._generator)
        return self.model(features), n_frames

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy CTC: best symbol per frame, repeats merged, blanks dropped."""
        transcripts = []
        for best, n in zip(log_probs.argmax(-1).tolist(), lengths.tolist()):
            best = best[:n]
            kept = [s for i, s in enumerate(best) if s != 0 and (i == 0 or best[i - 1] != s)]
            transcripts.append(self.normalize_text("".join(self.vocabulary[s] for s in kept)))
        return transcripts

    # --- capability "transcribe" (transcribe itself comes from Recognizer) ---------------
    def normalize_text(self, text: str) -> str:
        return " ".join(text.lower().split())

    # --- capability "loss" ---------------------------------------------------------------
    def loss(self, batch: AudioBatch, targets: Sequence[str]) -> torch.Tensor:
        """CTC loss toward each target ``(B,)``; gradients reach ``batch.waveforms``."""
        log_probs, n_frames = self.log_probs(batch)
        labels = [torch.tensor([self.vocabulary.index(c) for c in t]) for t in targets]
        return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(labels), n_frames,
                          torch.tensor([len(t) for t in labels]), blank=0, reduction="none", zero_infinity=True)

    def target_fits(self, batch: AudioBatch, targets: Sequence[str]) -> list[bool]:
        """A target fits when the language has its characters and the input has frames enough
        (one per character, plus a blank between doubled ones)."""
        fits = []
        for target, n in zip(targets, (batch.lengths // FRAME).tolist()):
            needed = len(target) + sum(a == b for a, b in zip(target, target[1:]))
            fits.append(bool(target) and set(target) <= set(ALPHABET) and needed <= n)
        return fits

    # --- capability "stochastic" ---------------------------------------------------------
    @contextlib.contextmanager
    def stochastic(self, p: float | None = None, *, seed: int) -> Iterator["ToneRecognizer"]:
        """Dropout on the spectral features while inside, seeded (no global RNG); weights never touched."""
        previous = (self._dropout_p, self._generator)
        self._dropout_p = DEFAULT_P if p is None else float(p)
        self._generator = torch.Generator().manual_seed(require_seed(seed))
        try:
            yield self
        finally:
            self._dropout_p, self._generator = previous

    def realizations(self, audio, n: int, seed: int = 0, *, p: float | None = None) -> Realizations:
        """``n`` dropout passes over one waveform in one batch; the same seed gives the same passes."""
        p = DEFAULT_P if p is None else float(p)
        batch = AudioBatch.from_waveforms([audio], self.sample_rate)
        with torch.no_grad():
            features, n_frames = self._features(batch)
            generator = torch.Generator().manual_seed(seed)
            log_probs = self.model(self._dropout(features.expand(n, -1, -1), p, generator))
        transcripts = self.decode(log_probs, n_frames.expand(n))
        return Realizations(transcripts, log_probs, int(n_frames[0]), p, seed)


def main(source_text: str = "open", target: str = "open the door", *, max_iter: int = 200,
         verbose: bool = True) -> dict:
    """Attack ``source_text`` toward ``target``, fit a detector on benign audio and score both.

    Returns the attack result, the L∞ bound it had to respect, the detector's explanations of the
    clean and the adversarial input, and the adversarial score of the detector saved and reloaded.

    Example:
        >>> outcome = main(verbose=False)
        >>> outcome["result"].transcript, outcome["adversarial"]["verdict"]
        ('open the door', 'adversarial')
    """
    recognizer = ToneRecognizer()
    source = speak(source_text, seed=1)

    # 1. CW toward the target: |δ| stays under max|x|·10^(−τ/20), and shrinks after each success
    config = CWConfig(tau_db=15.0, max_iter=max_iter, max_shrinks=3, learning_rate=0.1)
    result = CWAttack(recognizer, config).generate([source], [target])[0]
    bound = float(np.abs(source).max()) * 10 ** (-config.tau_db / 20)

    # 2. A detector fitted on benign audio only: the one-class Gaussian flags improbable uncertainty.
    #    A dozen examples cannot fill the default's five features, so it keeps two columns of them:
    #    P^char's second moment (how far dropout transcripts stray) and the entropy.
    benign = [speak(word, seed=seed) for seed, word in enumerate(
        ["stop", "start", "halt", "send", "read", "post", "load", "dash", "trade", "spend", "sold", "tread"], 10)]
    classifier = make_classifier("gaussian", columns=(1, 4))
    detector = Detector(recognizer, FeatureExtractor(n=30, p=0.1, seed=0), classifier).fit(benign)
    clean, adversarial = detector.explain(source), detector.explain(result.waveform)

    # 3. Saved detectors carry the recogniser's checksum and load only for that recogniser
    with tempfile.TemporaryDirectory() as folder:
        reloaded = Detector.load(detector.save(folder), recognizer)
        reloaded_score = reloaded.score(result.waveform)

    if verbose:
        print(f"clean:       {clean['transcript']!r:18} score {clean['score']:+8.2f} -> {clean['verdict']}")
        print(f"adversarial: {result.transcript!r:18} score {adversarial['score']:+8.2f} -> {adversarial['verdict']}"
              f"  (success {result.success}, {result.db_x_delta:.1f} dB, {result.iterations} steps)")
        print(f"threshold {detector.threshold:+.2f}; adversarial dropout transcripts: "
              + ", ".join(f"{d['transcript']!r}×{d['count']}" for d in adversarial["distinct"][:4]))
    return {"source": source, "result": result, "bound": bound, "clean": clean, "adversarial": adversarial,
            "reloaded_score": reloaded_score}


if __name__ == "__main__":
    main()
