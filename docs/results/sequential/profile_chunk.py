"""Rough profile of one 10-draw chunk of sequential scoring (shipped detector, 2 s clip, 1 torch thread).

Prints one chunk's and I = 50 scoring's time as ratios to one transcription, then a cProfile of 20 chunks.
The 3.1x quoted in the session 12 note was measured while a reproduction ran on both cores: a rough ratio.

    python docs/results/sequential/profile_chunk.py
"""
import time, numpy as np, torch, cProfile, pstats
torch.set_num_threads(1)
from asrguard.asr.ctc import CTCRecognizer
from asrguard.detect.sequential import chunk_scores
import sys; sys.path.insert(0, "/work/main/benchmarks")
from detect import two_second_utterance
rec = CTCRecognizer.load()
from asrguard.detect.detector import Detector
from asrguard.defaults import DEFAULT_DETECTOR_DIR
det = Detector.load(DEFAULT_DETECTOR_DIR, rec)
w = two_second_utterance(16000, 2.0)
def med(f, r=15):
    ts=[]
    for _ in range(r):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return float(np.median(ts))
tr = med(lambda: rec.transcribe([w]))
s1 = med(lambda: chunk_scores(det, w, 10)(1))
full = med(lambda: det.score(w))
print("transcribe", tr, "chunk1", s1/tr, "I=50", full/tr)
pr = cProfile.Profile(); pr.enable()
for _ in range(20): chunk_scores(det, w, 10)(1)
pr.disable(); pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
