"""The report page's cost for an hour of speech: render time, page size, load time in Chromium.

    python -m bench.report              5 renders and, when chromium is installed, 5 loads

The hour is synthetic (tests/result_factory.py): 1,200 segments of 3 s, two speakers, and the
SER partial's emotion windows (3 s, 1.5 s hop), with the default model's 4 labels and with 7.
Render time is CPU arithmetic on a shared machine: the range over the renders is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

LABEL_SETS = {4: ("angry", "happy", "neutral", "sad"),
              7: ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")}


def main(argv: list[str]) -> int:
    from tests.chromium import Chromium, find_chromium
    from tests.result_factory import synthetic_result, synthetic_windows
    from workers.core.contracts import SerPartial, from_dict
    from workers.report.page import render_report

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="renders and page loads per case (default 5)")
    args = parser.parse_args(argv)
    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        browser = Chromium(binary, Path(tmp) / "profile") if binary else None
        try:
            for count, labels in LABEL_SETS.items():
                result = synthetic_result(1200, labels=labels, speakers=("S1", "S2"))
                windows = from_dict(SerPartial, synthetic_windows(result))
                renders = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    page = render_report(result, windows=windows)
                    renders.append(time.perf_counter() - started)
                path = Path(tmp) / f"hour-{count}.html"
                path.write_text(page, encoding="utf-8")
                line = (f"{count} labels, {len(result['segments'])} segments, {len(windows.windows)} windows: render "
                        f"{min(renders) * 1000:.0f}-{max(renders) * 1000:.0f} ms "
                        f"(median {statistics.median(renders) * 1000:.0f}), page {len(page.encode()) / 1e6:.2f} MB")
                if browser is not None:
                    loads = []
                    for _ in range(args.runs):
                        started = time.perf_counter()
                        tab = browser.open(path.as_uri())
                        loads.append(time.perf_counter() - started)
                        tab.close()
                    line += f", load in headless Chromium {min(loads):.2f}-{max(loads):.2f} s"
                print(line, flush=True)
        finally:
            if browser is not None:
                browser.close()
    if binary is None:
        print("chromium is not installed: load times left out (apt-get install chromium)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
