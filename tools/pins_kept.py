"""Check that installing the package would change none of a set of pinned packages.

Usage::

    pip install --report report.json -e .        # or with --dry-run
    python tools/pins_kept.py .ci/colab-constraints.txt report.json

``report.json`` is pip's installation report (``pip install --report``). Every
line ``name==version`` of the constraints file is a pin. The check fails (exit 1)
when the report would install any pinned package, at its pinned version or
another one, and prints one line per change.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of a constraints file."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if not m:
            raise ValueError(f"constraints line {line!r} is not of the form name==version")
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def changes(pins: dict[str, str], report: dict) -> list[str]:
    """One line per pinned package that pip's ``report`` would install."""
    out = []
    for item in report.get("install", []):
        meta = item["metadata"]
        name = _norm(meta["name"])
        if name in pins:
            out.append(f"{meta['name']}: pinned {pins[name]}, pip would install {meta['version']}")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: pins_kept.py CONSTRAINTS REPORT_JSON", file=sys.stderr)
        return 2
    pins = read_pins(Path(argv[0]).read_text(encoding="utf-8"))
    report = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    bad = changes(pins, report)
    for line in bad:
        print(line)
    installs = sorted(_norm(i["metadata"]["name"]) for i in report.get("install", []))
    if not bad:
        print(
            f"pins kept ({len(pins)}: {', '.join(sorted(pins))}); {len(installs)} packages in the report"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
