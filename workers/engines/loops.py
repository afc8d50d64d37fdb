"""Whisper's failure loops, told from people who say the same thing again, and cut.

A decoder that has lost its place repeats the same word, phrase or letters until its token
limit: "mme mme mme …", "Thank you. Thank you. Thank you.", "शाशाशाशा…". People repeat too:
acted corpora read two sentences again and again, calls repeat "thank you" and a product's
name. What tells them apart is the pause structure: each time a speaker says the sentence
again it starts after a pause, where voice activity detection starts a speech region; a loop's
rounds are spread over the speech with no regard for its pauses (or pile up past its end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from workers.core.contracts import Segment, Word
from workers.engines.vad import Span

_TOKEN = re.compile(r"[\w']+")
# The longest phrase a loop repeats ("Good morning and welcome to the next episode of the", 10 words,
# was seen over babble).
MAX_PHRASE_WORDS = 16
# The same 1-3 letters (or marks) 6 times running inside a word: "nkkkkkkk", "शाशाशाशाशाशा".
_LETTER_LOOP = re.compile(r"((?:(?![\s\d]).){1,3}?)\1{5,}")
# A round of a repetition "starts a speech region" when a region starts within its first word or
# this close to it. The aligner often stretches a repeat's first word back over the pause before
# it ("Dogs" from 89.4 s, the end of the sentence before, to the next region at 91.3 s).
ROUND_START_SLACK_SECONDS = 0.6
# Repetition is speech when at least this share of its rounds start a speech region.
SPOKEN_ROUNDS_SHARE = 0.75


@dataclass(frozen=True)
class Run:
    """Rounds of ``n`` tokens said again and again: tokens ``start`` to ``stop`` of the text."""

    start: int
    n: int
    rounds: int

    @property
    def stop(self) -> int:
        return self.start + self.n * self.rounds


def runs(tokens: Sequence[str]) -> list[Run]:
    """Each stretch where a word comes 4 times running, or a phrase of 2-16 words 3 times, the
    shortest phrase first, in text order, not overlapping ("no, no, no" and a paragraph read
    twice are no run)."""
    found: list[Run] = []
    i = 0
    while i < len(tokens):
        run = _run_at(tokens, i)
        if run is None:
            i += 1
            continue
        found.append(run)
        i = run.stop
    return found


def _run_at(tokens: Sequence[str], i: int) -> Run | None:
    for n in range(1, MAX_PHRASE_WORDS + 1):
        needed = 4 if n == 1 else 3
        rounds = 1
        while tokens[i + rounds * n : i + (rounds + 1) * n] == tokens[i : i + n]:
            rounds += 1
        if rounds >= needed:
            return Run(i, n, rounds)
    return None


def repeats_itself(text: str) -> bool:
    """Whether ``text`` holds a run or letters that loop, whatever its timing."""
    return bool(_LETTER_LOOP.search(text)) or bool(runs(_TOKEN.findall(text.lower())))


def _tokens(words: Sequence[Word]) -> tuple[list[str], list[int]]:
    """The text's tokens, and the index of the word each comes from."""
    tokens, owners = [], []
    for k, word in enumerate(words):
        for token in _TOKEN.findall(word.word.lower()):
            tokens.append(token)
            owners.append(k)
    return tokens, owners


def _starts_a_region(word: Word, regions: Sequence[Span]) -> bool:
    return any(word.start - ROUND_START_SLACK_SECONDS <= a <= word.end + ROUND_START_SLACK_SECONDS for a, _ in regions)


def is_spoken(run: Run, words: Sequence[Word], owners: Sequence[int], regions: Sequence[Span]) -> bool:
    """Whether most rounds of ``run`` start where the speech starts again after a pause. A run
    is found from its earliest token ("the door. Kids are talking by | the door. Kids ..."), so
    each of its phases is tried for the one where the speaker starts again."""
    for phase in range(run.n):
        firsts = [words[owners[i]] for i in range(run.start + phase, min(run.stop + phase, len(owners)), run.n)]
        if sum(_starts_a_region(w, regions) for w in firsts) >= SPOKEN_ROUNDS_SHARE * run.rounds:
            return True
    return False


def loops(segments: Sequence[Segment], regions: Sequence[Span]) -> bool:
    """Whether the text of ``segments`` (one window's, over the speech ``regions``) holds a
    decoding loop: letters that loop, or a run of words whose rounds do not follow the pauses.
    Segments without words (a decoder that timed nothing) loop when their text does."""
    words = [w for s in segments for w in s.words]
    if any(not s.words and repeats_itself(s.text) for s in segments):
        return True
    if any(_LETTER_LOOP.search(w.word) for w in words):
        return True
    tokens, owners = _tokens(words)
    return any(not is_spoken(run, words, owners, regions) for run in runs(tokens))


def cut(segments: Sequence[Segment], regions: Sequence[Span]) -> list[Segment]:
    """``segments`` with each loop cut to its first round (letters that loop to one round of
    them); repetition that follows the pauses is kept."""
    words = [w for s in segments for w in s.words]
    tokens, owners = _tokens(words)
    dropped: set[int] = set()
    for run in runs(tokens):
        if is_spoken(run, words, owners, regions):
            continue
        first_round_ends = owners[run.start + run.n - 1]
        dropped |= {owners[t] for t in range(run.start + run.n, run.stop)} - {first_round_ends}
    out, k = [], 0
    for seg in segments:
        if not seg.words:
            if not repeats_itself(seg.text):
                out.append(seg)
            continue
        kept = [_letters_cut(w) for j, w in enumerate(seg.words, start=k) if j not in dropped]
        k += len(seg.words)
        if kept == seg.words:
            out.append(seg)
        elif kept:
            out.append(replace(seg, start=kept[0].start, end=max(kept[-1].end, kept[0].start),
                               text="".join(w.word for w in kept).strip(), words=kept))
    return out


def _letters_cut(word: Word) -> Word:
    text = _LETTER_LOOP.sub(r"\1", word.word)
    return word if text == word.word else replace(word, word=text)
