"""The comparison's dropout-uncertainty detector, fitted from the comparison's cached features."""
from asrguard.asr.registry import load_recognizer
from asrguard.experiments.comparison import _fresh_detector
from asrguard.experiments.comparison.inputs import FeatureSource, comparison_sets


def fitted_uncertainty(run, out):
    """``(recogniser, sets, detector, feature source, benign fit rows)`` as `compare-detectors` fits them."""
    rec = load_recognizer(None)
    sets = comparison_sets(run, rec, n_english=60, n_calibration=300)
    det = _fresh_detector("uncertainty", rec, sets.settings, 0, "all-svm")
    source = FeatureSource(det, run, out, sets.settings)
    benign_rows = source.table(sets.fit_benign)
    det.fit_features(benign_rows, source.table(sets.fit_adversarial), source.table(sets.calibration))
    return rec, sets, det, source, benign_rows
