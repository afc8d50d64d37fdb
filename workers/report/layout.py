"""What every report page shares: the page shell with its inline style, label colours, formats.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common kinds
of colour blindness; every coloured thing also carries its label in text (or a dash
pattern in the timeline), so nothing is told by colour alone.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from itertools import cycle
from typing import Sequence

# Well-known labels get a colour that reads as their meaning; any other label takes the next
# free palette colour, so a model's own label set needs no entry here.
_PALETTE = ("#D55E00", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#8C8C8C", "#F0E442")
_HINTS = {
    "angry": "#D55E00", "anger": "#D55E00", "ang": "#D55E00",
    "sad": "#0072B2", "sadness": "#0072B2",
    "happy": "#E69F00", "happiness": "#E69F00", "joy": "#E69F00", "hap": "#E69F00",
    "disgust": "#009E73",
    "fear": "#CC79A7", "fearful": "#CC79A7",
    "surprise": "#56B4E9", "surprised": "#56B4E9",
    "neutral": "#8C8C8C", "neu": "#8C8C8C", "calm": "#8C8C8C",
}
SENTIMENT_RULES = ".s-positive{--c:#009E73}.s-negative{--c:#D55E00}.s-neutral{--c:#8C8C8C}"
_DASHES = ("", "7 4", "2 3", "9 3 2 3", "1 3", "12 5", "5 2 1 2 1 2", "3 6")


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per label, distinct while the palette lasts."""
    hinted = {_HINTS[label.lower()] for label in labels if label.lower() in _HINTS}
    free = cycle([c for c in _PALETTE if c not in hinted] or _PALETTE)
    return {label: _HINTS.get(label.lower()) or next(free) for label in labels}


def colour_rules(labels: Sequence[str]) -> str:
    """CSS giving ``.e<i>`` (the class of label i everywhere in a page) its colour."""
    colours = label_colours(labels)
    return "".join(f".e{i}{{--c:{colours[label]}}}" for i, label in enumerate(labels))


def colour_class(label: str | None, index: dict[str, int]) -> str:
    """The class that colours a thing by an emotion label (grey for none or an unknown one)."""
    return f"e{index[label]}" if label in index else "e-none"


def dash(i: int) -> str:
    """The stroke-dasharray attribute of label i's line (the first label's is solid)."""
    pattern = _DASHES[i % len(_DASHES)]
    return f' stroke-dasharray="{pattern}"' if pattern else ""


def clock(seconds: float | None, *, hours: bool = False) -> str:
    """m:ss, or h:mm:ss for long audio (``hours`` keeps one format down a long page)."""
    if seconds is None:
        return "–"
    total = int(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h or hours else f"{m}:{s:02d}"


def percent(share: float) -> str:
    return f"{round(share * 100)} %"


@cache
def _asset(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def page(title: str, body: str, *, style: str = "", script: bool = False) -> str:
    """A whole HTML document with everything inline: it opens from file:// and from a mail."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_asset('report.css')}{style}</style></head>\n"
        f"<body>{body}" + (f"<script>{_asset('report.js')}</script>" if script else "") + "</body></html>\n"
    )
