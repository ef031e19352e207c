"""One detector over several kinds of evidence: dropout uncertainty and transcript consistency.

Each kind of evidence misses what another catches. Dropout uncertainty is evaded by an
attacker who makes the target survive dropout (``eot-dropout``); such an example still has to
survive audio transformations and added noise, which the attacker did not optimise for, and
the reverse holds for an attacker who fits the transforms (``bpda-transform``). The combined
detector measures, per input:

* the dropout-uncertainty features of the ``all-svm`` classifier (P^char and P^prob moments,
  entropy, mutual information, variance, aKLD; ``n`` realisations at rate ``p``), ``log1p``-ed
  as that classifier does;
* the transcript distances of each member rival in ``members`` (``transform``: mel inversion,
  LPC, resampling, quantisation; ``noise-flood``: band-limited noise), the input and all its
  copies transcribed in one batch;

and scores them with one linear SVM on standardised features, fitted on benign and adversarial
examples (it needs both). The SVM is strongly regularised (``C = 0.03``) because the fitting
sets are small (tens of examples a side) beside 21 features; docs/results/compare reports how
``C`` and the members were chosen. Nothing is pickled: the scaler and the SVM's weights are
saved as safetensors.

A transcript that changes under a transform or noise is evidence *for* an attack, never
against one, so the members' distances may only add to the score: after each fit, the
distances given a negative weight are dropped and the SVM is fitted again, until none is
negative. Without that rule, a fit on one attack (DR, whose examples barely change under
30 dB noise) gave those distances small negative weights, and another attack (IA), which
changes a lot under that noise, scored as benign (docs/results/compare/paper).

Example:
    >>> det = CombinedDetector(rec, members=("transform", "noise-flood")).fit(benign, adversarial)  # doctest: +SKIP
    >>> det.explain("x.wav")["features"]["transform:distance_mel"]                                  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping, Sequence

import numpy as np
from sklearn.svm import LinearSVC

from ..errors import ConfigError
from ..uncertainty.distributions import N_MOMENTS
from ..uncertainty.features import FeatureExtractor, FeatureTable, UncertaintyFeatures
from ..uncertainty.realizations import DEFAULT_N, DEFAULT_P
from .classifiers import SPECS, signed_log1p
from .detector import DEFAULT_TARGET_FPR
from .rivals import NoiseFloodDetector, TransformDetector
from .rivals.base import RivalDetector, standardisation, transcript_distance

#: The rivals a combined detector can take evidence from (each compares transcripts of copies).
MEMBERS = {cls.kind: cls for cls in (TransformDetector, NoiseFloodDetector)}
#: The uncertainty feature groups it reads: the ``all-svm`` classifier's.
UNCERTAINTY_GROUPS = SPECS["all-svm"].groups
DEFAULT_MEMBERS = ("transform", "noise-flood")
DEFAULT_C = 0.03


class CombinedDetector(RivalDetector):
    """Dropout-uncertainty features and member rivals' transcript distances, one linear SVM."""

    kind = "combined"
    needs = ("transcribe", "stochastic")
    needs_adversarial = True

    def __init__(self, recognizer, *, members: Sequence[str] | str = DEFAULT_MEMBERS, n: int = DEFAULT_N,
                 p: float = DEFAULT_P, C: float = DEFAULT_C, target_fpr: float = DEFAULT_TARGET_FPR, seed: int = 0,
                 masks: str = "iid", transform_measure: str = "transcript"):
        super().__init__(recognizer, target_fpr=target_fpr, seed=seed)
        names = tuple(m.strip() for m in members.split(",")) if isinstance(members, str) else tuple(members)
        unknown = [m for m in names if m not in MEMBERS]
        if unknown or len(set(names)) != len(names):
            raise ConfigError(f"members must be distinct names from {', '.join(MEMBERS)}; got {', '.join(names)}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ConfigError(f"n (dropout realisations) must be an integer >= 2, got {n!r}")
        if not 0.0 < float(p) < 1.0:
            raise ConfigError(f"p (dropout rate) must be in (0, 1), got {p}")
        if not float(C) > 0:
            raise ConfigError(f"C must be positive, got {C}")
        self.n, self.p, self.C = int(n), float(p), float(C)
        self.extractor = FeatureExtractor(n=self.n, p=self.p, seed=self.seed, masks=masks)
        # the members share the seed: each derives its own streams from it under its own name
        self.transform_measure = transform_measure
        given = {"transform": {"measure": transform_measure}} if transform_measure != "transcript" else {}
        self.members = {name: MEMBERS[name](recognizer, seed=self.seed, **given.get(name, {})) for name in names}
        uncertainty = [name for g in UNCERTAINTY_GROUPS for name in
                       ([f"uncertainty:{g}_{k}" for k in range(1, N_MOMENTS + 1)] if g.endswith("_moments")
                        else [f"uncertainty:{g}"])]
        self.feature_names = uncertainty + [f"{name}:{f}" for name, member in self.members.items()
                                                       for f in member.feature_names]
        self.mean_ = self.scale_ = self.coef_ = None
        self.intercept_: float | None = None

    def settings(self) -> dict:
        masks = self.extractor.config.masks
        return {"members": list(self.members), "n": self.n, "p": self.p, "C": self.C, "seed": self.seed,
                **({"masks": masks} if masks != "iid" else {}),
                **({"transform_measure": self.transform_measure} if self.transform_measure != "transcript" else {})}

    @property
    def rule(self) -> str:
        return "combined-svm"

    @property
    def passes(self) -> int:
        # the dropout realisations, the input once, and every member's copies
        return self.n + 1 + sum(member.passes - 1 for member in self.members.values())

    def set_mask_seed(self, seed: int | str | None) -> "CombinedDetector":
        """A new seed (``"random"``: a secret one) for the dropout masks and the members' noise alike."""
        super().set_mask_seed(seed)
        self.extractor = self.extractor.replace(seed=self.seed)
        for member in self.members.values():
            member.seed = self.seed
        return self

    def fingerprint(self) -> str:
        """SHA-256 of the settings, the learned arrays and the threshold: equal for equal detectors."""
        # its own digest, not RivalDetector's: combined-evasion folders made in memory are named by this one
        self._check_fitted()
        digest = hashlib.sha256(json.dumps({"settings": self.settings(), "threshold": self.threshold_},
                                           sort_keys=True).encode())
        for array in (self.mean_, self.scale_, self.coef_, np.array([self.intercept_])):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return digest.hexdigest()

    # --- features ------------------------------------------------------------------------
    def join(self, uncertainty: FeatureTable | UncertaintyFeatures, member_rows: Mapping[str, np.ndarray]
             ) -> np.ndarray:
        """Feature rows from uncertainty features and each member's rows (as the member measures them).

        Lets features already measured by the separate detectors be combined without measuring again.

        Example:
            >>> rows = det.join(FeatureTable.stack(feats), {"transform": t_rows, "noise-flood": n_rows})  # doctest: +SKIP
        """
        table = FeatureTable.stack([uncertainty]) if isinstance(uncertainty, UncertaintyFeatures) else uncertainty
        missing = [m for m in self.members if m not in member_rows]
        if missing:
            raise ConfigError(f"rows of member {missing[0]!r} are missing; the members are {', '.join(self.members)}")
        parts = [signed_log1p(table.matrix(UNCERTAINTY_GROUPS))]
        for name, member in self.members.items():
            rows = np.asarray(member_rows[name], dtype=np.float64).reshape(table.n_rows, -1)
            if rows.shape[1] != len(member.feature_names):
                raise ConfigError(f"{name}: expected {len(member.feature_names)} columns, got {rows.shape[1]}")
            parts.append(rows)
        return np.hstack(parts)

    def _measure(self, waveform: np.ndarray) -> tuple[np.ndarray, dict]:
        feats = self.extractor(self.recognizer, waveform)
        copies = {name: member.copies_of(waveform) for name, member in self.members.items()}
        transcripts = self.recognizer.transcribe([waveform] + [c for group in copies.values() for c in group])
        member_rows, compared, start = {}, [], 1
        for name, member in self.members.items():
            end = start + len(copies[name])
            member_rows[name], evidence = member.compare_copies(waveform, copies[name],
                                                                [transcripts[0]] + transcripts[start:end])
            compared += [{**c, "what": f"{name}: {c['what']}"} for c in evidence["compared"]]
            start = end
        normalize = self.recognizer.normalize_text
        reference = normalize(transcripts[0])
        dropout = [{"what": f"dropout realisation {i}", "transcript": t,
                    "distance": transcript_distance(reference, normalize(t))}
                   for i, t in enumerate(feats.transcripts)]
        row = self.join(feats, member_rows)[0]
        return row, {"transcript": transcripts[0], "medoid": feats.medoid, "compared": dropout + compared}

    # --- the classifier ------------------------------------------------------------------
    def _fit_rows(self, benign: np.ndarray, adversarial: np.ndarray) -> None:
        rows = np.vstack([benign, adversarial])
        self.mean_, self.scale_ = standardisation(rows)
        standardised = (rows - self.mean_) / self.scale_
        labels = np.r_[np.zeros(len(benign), dtype=int), np.ones(len(adversarial), dtype=int)]
        distances = np.array([not name.startswith("uncertainty:") for name in self.feature_names])
        used = np.ones(len(self.feature_names), dtype=bool)
        while True:  # refit without the distances weighted below zero (module docstring)
            svm = LinearSVC(C=self.C, class_weight="balanced", max_iter=20_000, random_state=self.seed)
            svm.fit(standardised[:, used], labels)
            coef = np.zeros(len(used))
            coef[used] = svm.coef_[0]
            negative = distances & used & (coef < 0)
            if not negative.any():
                break
            used &= ~negative
        self.coef_, self.intercept_ = coef, float(svm.intercept_[0])
        self.metadata["distances_dropped"] = [name for name, d, u in zip(self.feature_names, distances, used)
                                              if d and not u]

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            raise ConfigError("combined detector is not fitted; call fit() or load a saved detector")
        return ((rows - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"scale.mean": self.mean_, "scale.scale": self.scale_, "svm.coef": self.coef_,
                    "svm.intercept": np.array([self.intercept_])}

    def _restore(self, config: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
        width = len(self.feature_names)
        self.mean_, self.scale_ = np.asarray(arrays["scale.mean"]), np.asarray(arrays["scale.scale"])
        self.coef_ = np.asarray(arrays["svm.coef"])
        if any(a.shape != (width,) for a in (self.mean_, self.scale_, self.coef_)):
            raise ConfigError(f"expected {width} feature means, scales and weights")
        self.intercept_ = float(arrays["svm.intercept"][0])


__all__ = ["CombinedDetector", "DEFAULT_C", "DEFAULT_MEMBERS", "MEMBERS", "UNCERTAINTY_GROUPS"]
