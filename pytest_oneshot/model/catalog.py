"""Model-catalog JSON for Codex, so any model name gets the full tool surface (``apply_patch``).

Codex falls back to metadata without ``apply_patch`` for a model name it does not know.
Its bundled catalog is embedded in the binary; we keep one entry of it
(``codex_model_template.json``, package data) and stamp out a catalog entry per model name
at run time. Regenerate the template when the pinned Codex version changes::

    python -m pytest_oneshot.model.catalog /path/to/codex
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

TEMPLATE_FILE = Path(__file__).with_name("codex_model_template.json")
SOURCE_SLUG = "gpt-5.5"
_CATALOG_MARKER = b'{\n  "models": ['


def extract_template(codex_bin: Path, source_slug: str = SOURCE_SLUG) -> dict[str, Any]:
    """Return the bundled catalog entry ``source_slug`` of ``codex_bin``, made offline-friendly.

    ``supports_search_tool`` is turned off (else MCP tools hide behind a ``tool_search``
    tool) and ``prefer_websockets`` too (a local server speaks SSE only).

    Raises:
        ValueError: the binary holds no catalog or no such entry.
    """
    data = codex_bin.read_bytes()
    start = data.find(_CATALOG_MARKER)
    if start < 0:
        raise ValueError(f"{codex_bin}: no bundled model catalog found (is this a codex binary?)")
    text = data[start : start + 8_000_000].decode("utf-8", "replace")
    catalog, _ = json.JSONDecoder().raw_decode(text)
    slugs = [model["slug"] for model in catalog["models"]]
    if source_slug not in slugs:
        raise ValueError(f"{codex_bin}: no catalog entry {source_slug!r} (found: {', '.join(slugs)})")
    entry = dict(catalog["models"][slugs.index(source_slug)])
    entry.update(supports_search_tool=False, prefer_websockets=False)
    return entry


@cache
def _template() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(TEMPLATE_FILE.read_text(encoding="utf-8"))
    return document


def catalog_for(models: Iterable[str]) -> dict[str, Any]:
    """A ``model_catalog_json`` document with one entry per model name."""
    entry = _template()["entry"]
    return {"models": [{**entry, "slug": model, "display_name": model} for model in dict.fromkeys(models)]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate the Codex model template from a codex binary")
    parser.add_argument("codex_bin", type=Path)
    parser.add_argument("--slug", default=SOURCE_SLUG, help="Bundled entry to copy")
    args = parser.parse_args(argv)
    version = subprocess.run(
        [str(args.codex_bin), "--version"], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    ).stdout.split()[-1]
    document = {
        "codex_version": version,
        "source_slug": args.slug,
        "entry": extract_template(args.codex_bin, args.slug),
    }
    TEMPLATE_FILE.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {TEMPLATE_FILE} from codex {version} ({args.slug})")


if __name__ == "__main__":
    main()
