"""Rival detectors behind the :class:`~asrguard.detect.detector.Detector` API (fit / score / predict /
explain / save / load), for comparison with the dropout-uncertainty detector:

* :class:`DistributionDetector` (``"distribution"``): statistics of the output distribution, one pass;
* :class:`TransformDetector` (``"transform"``): transcript change under audio transformations;
* :class:`TemporalDetector` (``"temporal"``): the first part's transcript against the whole's prefix;
* :class:`NoiseFloodDetector` (``"noise-flood"``): transcript change under band-limited noise.

Build them by name with :func:`asrguard.detect.registry.make_detector`; docs/detectors.md
describes each, its settings and how it differs from its paper.

Example:
    >>> from asrguard.detect.registry import make_detector
    >>> make_detector("temporal", rec, fractions=(0.5,)).fit(benign).score(x)   # doctest: +SKIP
    0.0
"""

from .base import RivalDetector, transcript_distance
from .distribution import DistributionDetector
from .noise import NoiseFloodDetector
from .temporal import TemporalDetector
from .transform import TransformDetector

__all__ = ["DistributionDetector", "NoiseFloodDetector", "RivalDetector", "TemporalDetector", "TransformDetector",
           "transcript_distance"]
