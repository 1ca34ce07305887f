"""Assertions used by every browser test: accessibility (axe-core) and no personal data in the URL."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

_axe = Axe()


def assert_accessible(page, *, context: str = "") -> None:
    """Run axe-core on the current page; fail listing every WCAG 2.1 A/AA violation."""
    results = _axe.run(
        page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    )
    violations = results.response.get("violations", [])
    summary = [f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)" for v in violations]
    assert not violations, f"axe-core violations {context}:\n" + "\n".join(summary)
