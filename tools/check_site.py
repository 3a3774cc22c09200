"""Check a built docs site offline: every internal link resolves, nothing loads from the web.

Sphinx (``-W -n``) already fails on a broken cross-reference or document link; this checks
the HTML it wrote, including the raw HTML of notebook outputs:

- every relative ``href``/``src`` names a file of the site, and its ``#anchor`` an id there;
- no ``<script>``, stylesheet or image is loaded from another host (the site works offline;
  plain links to other sites are fine).

    python tools/check_site.py build/docs     # prints each problem; exit 1 if any
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag/attr, url)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(("a", attrs["href"]))
        elif tag in ("script", "img", "iframe", "audio", "source") and attrs.get("src"):
            self.links.append((tag, attrs["src"]))
        elif tag == "link" and attrs.get("href"):
            self.links.append(("link", attrs["href"]))


def problems(site: Path) -> list[str]:
    """Every broken internal link and every remote resource of the site at ``site``."""
    pages = {}
    for path in site.rglob("*.html"):
        if "_static" in path.relative_to(site).parts:  # the theme's template fragments
            continue
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = page
    out = []
    for path, page in sorted(pages.items()):
        rel = path.relative_to(site.resolve())
        for tag, url in page.links:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if tag != "a":
                    out.append(f"{rel}: <{tag}> loads {url} from the web")
                continue
            if parts.scheme in ("mailto", "data", "javascript") or tag != "a" and not parts.path:
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                out.append(f"{rel}: link to {url}: no such file")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if unquote(parts.fragment) not in ids:
                    out.append(f"{rel}: link to {url}: no such anchor")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    site = Path(args[0] if args else "build/docs")
    found = problems(site)
    for line in found:
        print(line)
    n = sum(1 for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)
    print(f"check_site: {n} pages, {len(found)} problems", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
