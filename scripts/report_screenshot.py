"""The README's picture of a report: a result's page in headless Chromium, saved as a small PNG.

    .venv/bin/python scripts/report_screenshot.py results/en_support_call.flac.json \\
        samples/en_support_call.flac docs/report.png
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chromium import Chromium, find_chromium  # noqa: E402
from workers.report.files import link  # noqa: E402
from workers.report.page import render_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="a result JSON")
    parser.add_argument("audio", type=Path, help="its audio (the page shows a player)")
    parser.add_argument("png", type=Path, help="where to write the picture")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        parser.error("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render_report(json.loads(args.result.read_text()), audio_src=link(args.audio, page.parent)))
        browser = Chromium(binary, Path(tmp) / "profile")
        try:
            tab = browser.open(page.as_uri(), width=args.width, height=args.height)
            png = tab.screenshot()
        finally:
            browser.close()
    args.png.write_bytes(png)
    print(f"{args.png}: {len(png) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
