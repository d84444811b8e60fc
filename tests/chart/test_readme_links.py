"""The README's relative links and in-page anchors resolve (the Istio,
Kubernetes and container sections point operators at repository files)."""

from __future__ import annotations

import re

from chartkit import REPO

README = (REPO / "README.md").read_text()


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_name_existing_files():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert any(link.startswith("charts/gatehouse") for link in links)
    missing = [link for link in links if not (REPO / link).exists()]
    assert missing == []


def test_anchor_links_name_existing_headings():
    headings = {anchor(h) for h in re.findall(r"^#{1,6} (.+)$", README, re.M)}
    anchors = re.findall(r"\]\(#([^)]+)\)", README)
    assert {"running-under-istio", "container-image"} <= set(anchors)
    assert [a for a in anchors if a not in headings] == []
