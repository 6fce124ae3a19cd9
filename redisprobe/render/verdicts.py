"""Findings as a terminal section: rule id, one-line verdict, and the evidence that names who did it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text

from redisprobe.findings import Finding
from redisprobe.render.escape import shown

_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}


def findings_block(findings: Sequence[Finding], *, empty: str = "no finding") -> RenderableType:
    if not findings:
        return Text(f"✓ {empty}", style="bold green")
    parts: list[RenderableType] = []
    for finding in findings:
        head = Text()
        head.append(f"✗ {finding.rule}", style=_STYLE.get(finding.severity, "bold"))
        head.append(f" [{finding.severity}] ", style="dim")
        head.append(shown(finding.summary))
        parts.append(head)
        for line in finding.evidence:
            parts.append(Text(f"    • {shown(line)}", style="dim" if finding.severity == "info" else ""))
    return Group(*parts)
