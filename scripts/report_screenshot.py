"""The README's picture of a report: a report page in headless Chromium, saved as a small PNG.

    .venv/bin/python -m workers run samples results --report
    .venv/bin/python scripts/report_screenshot.py results/en_support_call.flac.html docs/report.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chromium import Chromium, find_chromium  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, help="a report page (workers report, or run --report)")
    parser.add_argument("png", type=Path, help="where to write the picture")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=1330)
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        parser.error("chromium is not installed (apt-get install chromium)")
    if not args.page.is_file():
        parser.error(f"{args.page} does not exist")
    with tempfile.TemporaryDirectory(prefix="report-shot-") as profile:
        browser = Chromium(binary, Path(profile))
        try:
            png = browser.open(args.page.resolve().as_uri(), width=args.width, height=args.height).screenshot()
        finally:
            browser.close()
    args.png.write_bytes(png)
    print(f"{args.png}: {len(png) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
