"""The README and docs/ stay true: short README, links that resolve, a CLI reference matching the parser."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_readme_is_short_and_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= 10_000
    assert "make demo" in text.split("\n## ")[0] and "make test" in text.split("\n## ")[0]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in _anchors(dest), f"{page.name}: {target}"


def test_cli_reference_matches_the_parser(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    from erasekit.cli import build_parser

    doc = (ROOT / "docs" / "cli.md").read_text()
    leaves = []

    def walk(parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves.append(parser)
        for a in subs:
            for sp in a.choices.values():
                walk(sp)

    walk(build_parser())
    assert len(leaves) >= 20
    for sp in leaves:
        assert sp.format_usage().strip() in doc, sp.prog


def test_readme_names_every_built_in_method_and_attack():
    from erasekit.attacks import ATTACKS
    from erasekit.erasure import METHODS

    text = (ROOT / "README.md").read_text()
    for registry in (METHODS, ATTACKS):
        built_in = [n for n in registry.names() if registry.get(n).__module__.startswith("erasekit.")]
        assert built_in and [n for n in built_in if f"`{n}`" not in text] == [], registry
