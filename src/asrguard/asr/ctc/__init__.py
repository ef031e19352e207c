"""The project's CTC recogniser: :mod:`.model` (the network), :mod:`.masks` (seeded dropout
masks), :mod:`.recognizer` (the Recognizer, decoding, model folders).

waveform ─► log-mel (64 bands, 0–8 kHz) ─► per-utterance mean removal ─► context stack + stride 2
         ─► 3 × [dense, clipped ReLU, dropout] ─► BiLSTM (forward + length-reversed) ─► dense, clipped ReLU, dropout
         ─► dense ─► log-softmax over blank, space, a–z, apostrophe

"""

from .masks import MASK_SCHEMES, balanced_block, dropout_keep_masks, realization_keep_masks, training_dropout
from .model import CTCConfig, DeepSpeechCTC, lstm_time_major
from .recognizer import (DEFAULT_MODEL_DIR, CTCRecognizer, config_digest, greedy_decode, native_bfloat16,
                         required_frames, seconds_for_target)

__all__ = ["MASK_SCHEMES", "CTCConfig", "CTCRecognizer", "DeepSpeechCTC", "balanced_block", "dropout_keep_masks", "greedy_decode", "native_bfloat16",
           "realization_keep_masks", "required_frames", "seconds_for_target", "DEFAULT_MODEL_DIR", "config_digest",
           "lstm_time_major", "training_dropout"]
