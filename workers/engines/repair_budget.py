"""A bound on the work one file may cost the decoder, whatever it holds.

Whisper base hears unscripted Urdu as Hindi and writes a loop of Devanagari letters until its
448-token limit; noise and music loop too. Each such window used to be decoded again (its
holes, then sequentially with the temperature fallback: up to 6 decodings of 448 tokens, for
each seek), and a 2 s clip cost 44-68 s of STT on 2 cores. Two bounds make the cost follow
the audio's length instead:

- a decoding may write at most ``BASE_TOKENS + TOKENS_PER_SECOND`` per second of the speech
  it covers (fast speech is 4-6 words, some 10-15 tokens, a second; Devanagari or Urdu script
  takes more tokens a word): text denser than that is a loop, cut there;
- the repair (decoding holes and looping windows again) spends decoder passes from a pool of
  ``passes_per_window`` per 30 s window of the file (``STT_REPAIR_PASSES``): a hole decoded
  again is one pass, a sequential decoding one pass per temperature it tries. When the pool is
  spent, what is left stays as the first decoding gave it (loops cut to their first round),
  and the transcript says so (``repair_budget_spent``).
"""

from __future__ import annotations

import math

# faster-whisper's own fallback when a decoding loops or is unlikely.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BASE_TOKENS = 32
TOKENS_PER_SECOND = 24
# Whisper's 448 positions less the longest prompt this pipeline gives (start, language, task, no timestamps).
MAX_NEW_TOKENS = 444


def token_limit(speech_seconds: float) -> int:
    """The most tokens a decoding of ``speech_seconds`` of speech may write."""
    return min(MAX_NEW_TOKENS, math.ceil(BASE_TOKENS + TOKENS_PER_SECOND * max(0.0, speech_seconds)))


class RepairBudget:
    """Decoder passes the repair of one file may still spend."""

    def __init__(self, passes: int) -> None:
        self.left = max(0, passes)
        self.ran_out = False  # some repair was wanted and not paid for

    @classmethod
    def for_windows(cls, windows: int, passes_per_window: int) -> RepairBudget:
        return cls(windows * passes_per_window)

    def take(self, wanted: int) -> int:
        """Up to ``wanted`` passes, taken from the pool: as many as are left."""
        granted = min(max(0, wanted), self.left)
        self.left -= granted
        return granted

    def settle(self, granted: int, used: int) -> None:
        """A decoding given ``granted`` passes used ``used`` (a fallback that stopped early uses
        fewer; one that seeks on, more): the difference goes back to, or comes from, the pool."""
        self.left = max(0, self.left + granted - used)

    def refused(self) -> None:
        """Some repair was wanted and not paid for."""
        self.ran_out = True
