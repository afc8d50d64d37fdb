"""What the words say, and one sentiment of voice and words together.

Text: VADER (``vaderSentiment``, MIT, its lexicon ships in the wheel) gives English text a
compound score in [-1, 1]; the usual cut-offs make it a label (>= 0.05 POSITIVE, <= -0.05
NEGATIVE). Other languages get no text sentiment: VADER's lexicon is English.

Fused: ``0.4 * voice + 0.6 * text`` where voice is P(positive emotions) - P(negative emotions)
of the segment's emotion scores, labelled at +-0.1; without a text sentiment it is the voice
alone. The words weigh more when the two disagree because they are the better measured
signal: Whisper's transcripts of English are measured at a few percent WER and VADER is
validated on English text, while the voice model scores about 0.54 on a corpus it never
heard (leave-one-corpus-out over acted German and English and Urdu talk shows) and has never
heard a phone line (docs/emotion.md). A strongly felt voice still
cancels strong words (an angry "thanks, great" with a voice of -0.9 and words of +0.6 fuses
to 0.0: neutral, not positive).
"""

from __future__ import annotations

import functools
from typing import Mapping, Optional, Sequence

from workers.core.contracts import ScoredSentiment, Sentiment
from workers.processing.sentiment_map import sentiment_of

TEXT_CUTOFF = 0.05
FUSED_CUTOFF = 0.1
VOICE_WEIGHT, TEXT_WEIGHT = 0.4, 0.6


@functools.lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def label_of(score: float, cutoff: float) -> Sentiment:
    return "POSITIVE" if score >= cutoff else "NEGATIVE" if score <= -cutoff else "NEUTRAL"


def text_sentiment(text: str, language: Optional[str]) -> Optional[ScoredSentiment]:
    """VADER's compound score of English text; None for other languages or no words."""
    if not text.strip() or not (language or "").lower().startswith("en"):
        return None
    score = float(_analyzer().polarity_scores(text)["compound"])
    return ScoredSentiment(label_of(score, TEXT_CUTOFF), score)


def voice_valence(labels: Sequence[str], scores: Sequence[float], mapping: Mapping[str, Sentiment]) -> float:
    total = sum(scores) or 1.0
    signs = {"POSITIVE": 1.0, "NEGATIVE": -1.0, "NEUTRAL": 0.0}
    return sum(signs[sentiment_of(label, mapping)] * s for label, s in zip(labels, scores)) / total


def fused_sentiment(voice: Optional[float], text: Optional[ScoredSentiment]) -> Optional[ScoredSentiment]:
    if voice is None and text is None:
        return None
    if text is None:
        score = voice
    elif voice is None:
        score = text.score
    else:
        score = VOICE_WEIGHT * voice + TEXT_WEIGHT * text.score
    score = max(-1.0, min(1.0, float(score)))  # type: ignore[arg-type]
    return ScoredSentiment(label_of(score, FUSED_CUTOFF), score)
