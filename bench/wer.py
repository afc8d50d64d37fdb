"""Word and character error rates on normalised text, for benchmarks and test bounds.

English goes through openai-whisper's ``EnglishTextNormalizer`` (the one the Whisper paper
scores with; openai-whisper is already installed as the second engine): it lowercases, drops
punctuation, spells numbers one way ("twelve percent" and "12%", "fourteen fifty-five" and
"1455", "One, two, three" and "1 2 3") and British spellings the American way. Other
languages get its ``BasicTextNormalizer`` (case, punctuation, diacritics kept).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence


@lru_cache(maxsize=None)
def _normaliser(language: str) -> Callable[[str], str]:
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    return EnglishTextNormalizer() if language == "en" else BasicTextNormalizer()


def normalise(text: str, language: str = "en") -> str:
    return _normaliser(language)(text)


def _edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def word_error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    ref, hyp = normalise(reference, language).split(), normalise(hypothesis, language).split()
    return _edits(ref, hyp) / max(len(ref), 1)


def character_error_rate(reference: str, hypothesis: str, language: str) -> float:
    """Characters, spaces left out: for languages whose word boundaries the normaliser may move."""
    ref = normalise(reference, language).replace(" ", "")
    hyp = normalise(hypothesis, language).replace(" ", "")
    return _edits(ref, hyp) / max(len(ref), 1)
