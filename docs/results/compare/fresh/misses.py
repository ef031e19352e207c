"""Which test examples the combined detector misses at 1 % FPR on each mixed run (fit on the run's own training
sources, cached features): corpus, score and target, against the highest benign test score.

    python docs/results/compare/fresh/misses.py
"""
import sys
sys.path.insert(0, 'docs/results/compare/fresh')
import pooled_fit as pf
from asrguard.asr.registry import load_recognizer
rec = load_recognizer(None)
for name, (run, out) in pf.RUNS.items():
    sets, src = pf.combined_rows(rec, run, out)
    det = src.detector
    det.fit_features(src.table(sets.fit_benign), src.table(sets.fit_adversarial), src.table(sets.calibration))
    for attack in ("dr", "ia"):
        ben = sets.benign_for(attack); adv = sets.attacks[attack]
        b = det.score_features(src.table(ben)); a = det.score_features(src.table(adv))
        cut = b.max()
        corp = lambda e: e.source.split(':')[0]
        print(name, attack, 'benign max', round(cut, 2), 'by corpus n:', {c: sum(corp(e) == c for e in adv) for c in ('fsdd-digits', 'speech-commands')},
              'misses:', [(corp(e)[:4], round(float(x), 2), (e.record or {}).get('target')) for e, x in zip(adv, a) if x <= cut])
