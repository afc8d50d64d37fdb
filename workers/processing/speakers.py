"""Who said each segment and word, and what each speaker's part of the conversation was like.

A segment from a channel analysed apart belongs to that channel's speaker. Otherwise each word
takes the speaker who talks most over it in the diarized turns (which may overlap; the nearest
turn when none covers it). A segment is cut where its words change speaker, and where its words
are apart by a pause of ``PAUSE_SECONDS`` in which the diarizer hears no one (the transcript's
segments bridge pauses), and trimmed to the diarizer's speech under it: on mono audio the speaker
timeline is the diarizer's own segmentation, not the transcript's segments. A run of words
shorter than ``BLIP_SECONDS`` between two runs of one other speaker keeps that speaker: such
blips are noise, not a turn. Diarized speakers are named S1, S2, … in the order they first speak
in the transcript.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np

from workers.core.contracts import Segment, SpeakerTurn, Word

BLIP_SECONDS = 0.5
INTERRUPTION_SECONDS = 0.2  # overlap that makes a new turn an interruption
PAUSE_SECONDS = 0.5  # silence between two words, by the diarizer, that cuts a segment


def speaker_at(start: float, end: float, turns: Sequence[SpeakerTurn]) -> Optional[str]:
    """The speaker who talks most over [start, end] (turns may overlap: two people at once);
    the nearest turn's when none does."""
    if not turns:
        return None
    starts = np.array([t.start for t in turns])
    ends = np.array([t.end for t in turns])
    overlap = np.minimum(ends, end) - np.maximum(starts, start)
    if overlap.max() > 0:
        talked: dict[str, float] = {}
        for t, seconds in zip(turns, overlap):
            if seconds > 0:
                talked[t.speaker] = talked.get(t.speaker, 0.0) + float(seconds)
        return max(talked, key=talked.__getitem__)
    distance = np.maximum(starts - end, start - ends)
    return turns[int(np.argmin(distance))].speaker


def attribute(segments: Sequence[Segment], turns: Optional[Sequence[SpeakerTurn]],
              channels: Optional[Sequence[str]]) -> list[Segment]:
    """Segments with their speaker (cut at speaker changes), in time order, numbered from 0."""
    return attribute_with_turns(segments, turns, channels)[0]


def attribute_with_turns(segments: Sequence[Segment], turns: Optional[Sequence[SpeakerTurn]],
                         channels: Optional[Sequence[str]]) -> tuple[list[Segment], Optional[list[SpeakerTurn]]]:
    """``attribute``'s segments, and the diarized turns named as those segments name their speakers
    (a speaker who says no transcribed word is named after them, in order of first turn); None
    when nothing was diarized."""
    out: list[Segment] = []
    for seg in segments:
        if seg.channel is not None and channels:
            name = channels[seg.channel]
            out.append(_spoken_by(seg, name))
        elif turns:
            out += _split_by_speaker(seg, [t for t in turns if t.channel is None])
        else:
            out.append(seg)
    out.sort(key=lambda s: (s.start, s.channel or 0))
    diarized = [t for t in turns or [] if t.channel is None] if not channels else []
    names = _first_appearance(out, diarized) if not channels else {}
    out = [s if s.speaker is None or s.speaker not in names else _spoken_by(s, names[s.speaker]) for s in out]
    named = [replace(t, speaker=names[t.speaker]) for t in sorted(diarized, key=lambda t: (t.start, t.end))]
    return [replace(s, id=i) for i, s in enumerate(out)], (named or None)


def _spoken_by(seg: Segment, speaker: Optional[str]) -> Segment:
    return replace(seg, speaker=speaker, words=[replace(w, speaker=speaker) for w in seg.words])


def _split_by_speaker(seg: Segment, turns: Sequence[SpeakerTurn]) -> list[Segment]:
    speech = speech_spans(turns)
    if not seg.words:
        return [_within_speech(_spoken_by(seg, speaker_at(seg.start, seg.end, turns)), speech)]
    who = [speaker_at(w.start, w.end, turns) for w in seg.words]
    runs = _runs(seg.words, who)
    runs = _without_blips(runs)
    runs = [piece for speaker, words in runs for piece in _cut_at_pauses(speaker, words, speech)]
    if len(runs) == 1:
        return [_within_speech(_spoken_by(seg, runs[0][0]), speech)]
    return [
        _within_speech(replace(seg, start=words[0].start, end=words[-1].end,
                               text="".join(w.word for w in words).strip(),
                               speaker=speaker, words=[replace(w, speaker=speaker) for w in words]), speech)
        for speaker, words in runs
    ]


def _within_speech(seg: Segment, speech: Sequence[tuple[float, float]]) -> Segment:
    """The segment trimmed to the diarizer's speech under it (Whisper's segment times reach into
    the silence around the words), never inside one of its words; as it is where the diarizer
    hears no one under it."""
    under = [(a, b) for a, b in speech if b > seg.start and a < seg.end]
    if not under:
        return seg
    start, end = max(seg.start, under[0][0]), min(seg.end, under[-1][1])
    if seg.words:
        start, end = min(start, seg.words[0].start), max(end, seg.words[-1].end)
    return replace(seg, start=start, end=end)


def speech_spans(turns: Sequence[SpeakerTurn]) -> list[tuple[float, float]]:
    """Where anyone talks: the union of the turns, in time order."""
    merged: list[tuple[float, float]] = []
    for t in sorted(turns, key=lambda t: t.start):
        if merged and t.start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], t.end))
        else:
            merged.append((t.start, t.end))
    return merged


def _longest_pause(start: float, end: float, speech: Sequence[tuple[float, float]]) -> float:
    """The longest stretch of [start, end] in which the diarizer hears no one."""
    longest, position = 0.0, start
    for a, b in speech:
        if b <= position:
            continue
        if a >= end:
            break
        longest = max(longest, min(a, end) - position)
        position = max(position, b)
    return max(longest, end - position)


def _cut_at_pauses(speaker: Optional[str], words: list[Word],
                   speech: Sequence[tuple[float, float]]) -> list[tuple[Optional[str], list[Word]]]:
    """One speaker's words cut where the diarizer hears no one for ``PAUSE_SECONDS`` between two
    words' middles: a transcript segment that bridges a pause becomes two."""
    pieces = [[words[0]]]
    for previous, word in zip(words, words[1:]):
        middle_before, middle_after = (previous.start + previous.end) / 2, (word.start + word.end) / 2
        if _longest_pause(middle_before, middle_after, speech) >= PAUSE_SECONDS:
            pieces.append([word])
        else:
            pieces[-1].append(word)
    return [(speaker, piece) for piece in pieces]


def _runs(words: Sequence[Word], who: Sequence[Optional[str]]) -> list[tuple[Optional[str], list[Word]]]:
    runs: list[tuple[Optional[str], list[Word]]] = []
    for word, speaker in zip(words, who):
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(word)
        else:
            runs.append((speaker, [word]))
    return runs


def _without_blips(runs: list[tuple[Optional[str], list[Word]]]) -> list[tuple[Optional[str], list[Word]]]:
    changed = True
    while changed and len(runs) > 2:
        changed = False
        for k in range(1, len(runs) - 1):
            speaker, words = runs[k]
            if runs[k - 1][0] == runs[k + 1][0] != speaker and words[-1].end - words[0].start < BLIP_SECONDS:
                runs[k - 1:k + 2] = [(runs[k - 1][0], runs[k - 1][1] + words + runs[k + 1][1])]
                changed = True
                break
    return runs


def _first_appearance(segments: Sequence[Segment], turns: Sequence[SpeakerTurn]) -> dict[str, str]:
    """S1, S2, … in the order speakers first speak in the transcript, then in the turns."""
    names: dict[str, str] = {}
    for who in [s.speaker for s in segments] + [t.speaker for t in sorted(turns, key=lambda t: t.start)]:
        if who is not None:
            names.setdefault(who, f"S{len(names) + 1}")
    return names


def talk_seconds(turns: Sequence[SpeakerTurn]) -> dict[str, float]:
    """Seconds each speaker talks in the turns (a speaker's own overlapping turns count once)."""
    by_speaker: dict[str, list[SpeakerTurn]] = {}
    for t in turns:
        by_speaker.setdefault(t.speaker, []).append(t)
    return {who: sum(b - a for a, b in speech_spans(mine)) for who, mine in by_speaker.items()}


def turn_count(segments: Sequence[Segment], speaker: str) -> int:
    """How many times ``speaker`` takes the floor: segments in time order whose previous one
    was someone else's (or that open the conversation)."""
    count, previous = 0, None
    for s in segments:
        if s.speaker == speaker and previous != speaker:
            count += 1
        previous = s.speaker
    return count


def overlaps(segments: Sequence[Segment | SpeakerTurn], speaker: str) -> tuple[int, float]:
    """(interruptions, seconds of overlap) of ``speaker`` with the others' segments, or turns:
    a mono recording's segments have one speaker each and never overlap, its diarized turns do."""
    mine = [s for s in segments if s.speaker == speaker]
    others = [s for s in segments if s.speaker not in (speaker, None)]
    interruptions, seconds = 0, 0.0
    for s in mine:
        shared = [min(s.end, o.end) - max(s.start, o.start) for o in others]
        seconds += sum(x for x in shared if x > 0)
        if any(o.start < s.start and o.end - s.start > INTERRUPTION_SECONDS for o in others):
            interruptions += 1
    return interruptions, seconds
