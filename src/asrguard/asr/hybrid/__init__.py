"""Hybrid DNN-HMM digit recogniser (Däubener et al. 2020).

* :mod:`.topology` - the 95-state digit-loop topology: states per word, allowed arcs;
* :mod:`.hmm` - transition estimation, Viterbi, forced alignment;
* :mod:`.acoustic` - 351-100-100-95 MLPs: fNN, MC dropout, deep ensemble, Bayes-by-backprop BNN;
* :mod:`.recognizer` - :class:`HybridRecognizer`, the :class:`~asrguard.asr.base.Recognizer` wrapper;
* :mod:`.digits` - connected-digit utterances: corpora, TTS voices, augmentation, training and dev sets;
* :mod:`.train` - the cross-entropy + Viterbi re-alignment recipe.

Example:
    >>> from asrguard.asr.hybrid import HybridRecognizer           # doctest: +SKIP
    >>> rec = HybridRecognizer.load("runs/daubener2020/models/fnn")  # doctest: +SKIP
"""

import importlib

# exported lazily so that importing the package does not pull in torch
_EXPORTS = {
    "DigitHMM": ".hmm", "Topology": ".topology", "AlignmentError": ".topology",
    "build_acoustic_model": ".acoustic", "KINDS": ".acoustic",
    "HybridRecognizer": ".recognizer",
    "TrainConfig": ".train", "train_recognizer": ".train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
