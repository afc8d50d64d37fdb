"""Calibrated emotion probabilities: a temperature and an ``uncertain`` threshold from held-out folds.

``train-ser`` keeps, for every clip it scores out of fold, the logits of the windows over it and
their overlap weights (the joiner's weights). A segment's probability is the weighted mean of the
windows' ``softmax(logits / T)``, so the temperature T is fitted on exactly that: the one T that
minimises the negative log-likelihood of the true labels of those held-out segments.

The ``uncertain`` threshold ``t`` is chosen on the same calibrated held-out segments: the smallest
candidate (0.30, 0.35, ... 0.95) from which on every band of top probability [u, u + 0.1)
(u = t, t + 0.05, ...) that holds at least 20 segments, the segments are right more than half the
time. Below it a segment is, on held-out data, as likely wrong as right (or worse); above it
every band is right more often than not.

Expected calibration error (ECE): the top label's probability in 10 equal-width bins, the mean
gap between each bin's mean probability and its accuracy, weighted by the bin's share of segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from workers.engines.ser_head import softmax

ECE_BINS = 10
UNCERTAIN_CANDIDATES = tuple(round(0.30 + 0.05 * k, 2) for k in range(14))  # 0.30 ... 0.95
UNCERTAIN_MAX_ACCURACY = 0.5
UNCERTAIN_BAND = 0.1
UNCERTAIN_BAND_SEGMENTS = 20  # fewer in a band: too few to judge it
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


@dataclass(frozen=True)
class HeldOut:
    """One clip scored out of fold: its true label, the overlap weight and the logits of each window."""

    truth: int
    weights: np.ndarray  # (windows,)
    logits: np.ndarray  # (windows, labels)


def probabilities(held_out: Sequence[HeldOut], temperature: float) -> np.ndarray:
    """Each clip's label probabilities at ``temperature``, as the joiner computes a segment's."""
    return np.stack([h.weights @ softmax(h.logits, temperature) / h.weights.sum() for h in held_out])


def truths(held_out: Sequence[HeldOut]) -> np.ndarray:
    return np.array([h.truth for h in held_out])


def negative_log_likelihood(held_out: Sequence[HeldOut], temperature: float) -> float:
    p = probabilities(held_out, temperature)[np.arange(len(held_out)), truths(held_out)]
    return float(-np.mean(np.log(np.clip(p, 1e-12, None))))


def fit_temperature(held_out: Sequence[HeldOut]) -> float:
    """The temperature (0.05-20) of least negative log-likelihood, by golden-section search on log T."""
    lo, hi = _LOG_T_BOUNDS
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = negative_log_likelihood(held_out, np.exp(a)), negative_log_likelihood(held_out, np.exp(b))
    while hi - lo > 1e-4:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = negative_log_likelihood(held_out, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = negative_log_likelihood(held_out, np.exp(b))
    return round(float(np.exp((lo + hi) / 2)), 4)


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == truth
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(confidence[which == b].mean() - correct[which == b].mean()) * np.mean(which == b)
            for b in range(bins) if np.any(which == b)]
    return round(float(np.sum(gaps)), 4)


def uncertain_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """The smallest candidate from which every well-filled band is right more than half the time
    (see the module); the largest candidate where none is."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == truth

    def band_is_right(u: float) -> bool:
        inside = (confidence >= u) & (confidence < u + UNCERTAIN_BAND)
        return inside.sum() < UNCERTAIN_BAND_SEGMENTS or correct[inside].mean() > UNCERTAIN_MAX_ACCURACY

    for k, t in enumerate(UNCERTAIN_CANDIDATES):
        if all(band_is_right(u) for u in UNCERTAIN_CANDIDATES[k:]):
            return t
    return UNCERTAIN_CANDIDATES[-1]


@dataclass(frozen=True)
class Flagged:
    """What a threshold does to held-out segments."""

    share_uncertain: float
    accuracy_uncertain: float | None
    accuracy_certain: float | None

    @classmethod
    def of(cls, probs: np.ndarray, truth: np.ndarray, threshold: float) -> "Flagged":
        below, correct = probs.max(axis=1) < threshold, probs.argmax(axis=1) == truth

        def accuracy(mask: np.ndarray) -> float | None:
            return round(float(correct[mask].mean()), 4) if mask.any() else None

        return cls(round(float(below.mean()), 4), accuracy(below), accuracy(~below))


@dataclass(frozen=True)
class CalibrationFigures:
    """ECE of one set of held-out segments before (T = 1) and after calibration, and what the
    ``uncertain`` threshold marks among them."""

    name: str
    segments: int
    temperature: float
    uncertain_below: float
    ece_before: float
    ece_after: float
    flagged: Flagged

    @classmethod
    def of(cls, name: str, held_out: Sequence[HeldOut], temperature: float, threshold: float) -> "CalibrationFigures":
        truth, calibrated = truths(held_out), probabilities(held_out, temperature)
        return cls(name, len(held_out), temperature, threshold,
                   expected_calibration_error(probabilities(held_out, 1.0), truth),
                   expected_calibration_error(calibrated, truth), Flagged.of(calibrated, truth, threshold))


@dataclass(frozen=True)
class Calibration:
    fitted_on: str  # the out-of-fold predictions T and the threshold were chosen on
    temperature: float
    uncertain_below: float
    figures: list[CalibrationFigures]


LOSO_NAME = "leave-one-speaker-out"
LOCO_NAME = "leave-one-corpus-out"


def calibrate(by_speaker: Sequence[HeldOut], by_corpus: dict[str, Sequence[HeldOut]]) -> Calibration:
    """T and the threshold from the leave-one-corpus-out predictions where there are several corpora
    (a user's recordings are a new corpus), else from the leave-one-speaker-out ones. The figures:
    both kinds of fold under that T, and each corpus under a T and a threshold fitted on the other
    corpora only (nothing of the corpus scored went into its calibration)."""
    pooled = [h for part in by_corpus.values() for h in part] if len(by_corpus) > 1 else list(by_speaker)
    fitted_on = LOCO_NAME if len(by_corpus) > 1 else LOSO_NAME
    temperature = fit_temperature(pooled)
    threshold = uncertain_threshold(probabilities(pooled, temperature), truths(pooled))
    figures = [CalibrationFigures.of(LOSO_NAME, by_speaker, temperature, threshold)]
    if len(by_corpus) > 1:
        figures.append(CalibrationFigures.of(f"{LOCO_NAME}: all corpora", pooled, temperature, threshold))
        for corpus, held_out in by_corpus.items():
            others = [h for name, part in by_corpus.items() if name != corpus for h in part]
            t_others = fit_temperature(others)
            figures.append(CalibrationFigures.of(
                f"{LOCO_NAME}: {corpus}, calibrated on the other corpora", held_out, t_others,
                uncertain_threshold(probabilities(others, t_others), truths(others))))
    return Calibration(fitted_on, temperature, threshold, figures)
