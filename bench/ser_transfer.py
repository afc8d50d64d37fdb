"""How the emotion model transfers beyond its training data: read speech it never heard.

    python -m bench.ser_transfer [--ser-model PATH]

The English (and one Russian) clips in ../shared/external are read or recited speech without
emotion labels: audiobook sentences, Harvard sentences, TIMIT, a speech. Read speech is what
emotion corpora call neutral, so the share of clips the model calls ``neutral`` is a rough
measure of transfer to new speakers, languages and microphones. It prints each clip's mean window
scores and the distribution of top labels.

The default head (four emotion corpora) is trained without these folders, so on it this bench is
a held-out reading. A head trained with them added as neutral (``train-ser ... --add
neutral=FOLDER``) is in-sample here, and the bench says so; its held-out figure is its card's
"added folders" row (each folder scored by heads trained without it).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from bench.corpus import EXTERNAL, require_external
from workers.composition import Root
from workers.processing.audio import decode
from workers.core.settings import Settings

READ_SPEECH = ("coqui-ljspeech", "speechbrain-samples", "deepspeech-smoke", "uberi-sr", "fw-tests")
AUDIO = (".wav", ".flac", ".mp3")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ser_transfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ser-engine", default="whisper-head")
    parser.add_argument("--ser-model", default="", help="default: the model set-up assembles")
    args = parser.parse_args()
    require_external()
    ser = Root(Settings.from_env(ser_engine=args.ser_engine, ser_model=args.ser_model or None)).ser_engine()
    files = [p for d in READ_SPEECH for p in sorted((EXTERNAL / d).iterdir()) if p.suffix in AUDIO]
    top: Counter[str] = Counter()
    print(f"{'clip':<48}{'s':>6}  " + "".join(f"{label:>9}" for label in ser.labels))
    for path in files:
        audio = decode(path, max_seconds=600).samples
        scores = np.mean([w.scores for w in ser.classify(audio).windows], axis=0)
        top[ser.labels[int(scores.argmax())]] += 1
        print(f"{path.parent.name + '/' + path.name:<48}{len(audio) / 16000:>6.1f}  "
              + "".join(f"{x:>9.2f}" for x in scores))
    added = {name.lstrip("+") for name in getattr(getattr(ser, "head", None), "training", {}).get("added", [])}
    if added & set(READ_SPEECH):
        print(f"\nNOTE: this head was trained on {', '.join(sorted(added & set(READ_SPEECH)))} as neutral: in-sample. "
              "Its held-out figure is the model card's 'added folders' row.")
    print(f"\n{ser.engine.model}: top label of {len(files)} read-speech clips: "
          + ", ".join(f"{label} {top[label]}" for label in ser.labels)
          + f"  (neutral share {top['neutral'] / len(files):.2f})")


if __name__ == "__main__":
    main()
