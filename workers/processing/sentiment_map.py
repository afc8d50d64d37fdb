"""Which sentiment each emotion label stands for: the built-in map and SENTIMENT_MAP's additions.

The joiner labels every segment and summary with the sentiment of its top emotion, and the fused sentiment weighs
the voice by it; both read the map from here."""

from __future__ import annotations

from typing import Mapping

from workers.core.contracts import Sentiment
from workers.core.errors import ConfigError

SENTIMENTS: tuple[Sentiment, ...] = ("POSITIVE", "NEGATIVE", "NEUTRAL")

# Label spellings used by common emotion checkpoints (IEMOCAP/RAVDESS/CREMA-D/superb).
DEFAULT_SENTIMENT_MAP: dict[str, Sentiment] = {
    **dict.fromkeys(["happy", "hap", "happiness", "joy", "excited", "exc", "surprise", "surprised", "sur",
                     "pleasant"], "POSITIVE"),
    **dict.fromkeys(["angry", "ang", "anger", "sad", "sadness", "fear", "fearful", "fea", "disgust", "disgusted",
                     "dis", "frustrated", "fru", "contempt"], "NEGATIVE"),
    **dict.fromkeys(["neutral", "neu", "calm", "other", "unknown", "xxx"], "NEUTRAL"),
}


def parse_sentiment_map(spec: str) -> dict[str, Sentiment]:
    """Built-in map updated with ``label=SENTIMENT,label=SENTIMENT`` from SENTIMENT_MAP."""
    mapping = dict(DEFAULT_SENTIMENT_MAP)
    for item in filter(None, (p.strip() for p in spec.split(","))):
        label, sep, sentiment = item.partition("=")
        sentiment = sentiment.strip().upper()
        if not sep or sentiment not in SENTIMENTS:
            raise ConfigError(f"SENTIMENT_MAP entry {item!r} must look like label=POSITIVE|NEGATIVE|NEUTRAL")
        mapping[label.strip().lower()] = sentiment  # type: ignore[assignment]
    return mapping


def sentiment_of(label: str, mapping: Mapping[str, Sentiment]) -> Sentiment:
    return mapping.get(label.lower(), "NEUTRAL")
