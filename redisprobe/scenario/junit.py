"""Scenario results as JUnit XML, the report format CI systems (GitHub, GitLab, Jenkins) display."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from redisprobe.render.escape import escape
from redisprobe.scenario.model import ScenarioResult


def junit_xml(results: list[ScenarioResult], *, suite: str = "redisprobe") -> ET.ElementTree:
    failures = sum(r.status == "failed" for r in results)
    errors = sum(r.status in ("error", "interrupted") for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    total = sum(r.seconds for r in results)
    root = ET.Element("testsuites", name=suite, tests=str(len(results)), failures=str(failures),
                      errors=str(errors), skipped=str(skipped), time=f"{total:.3f}")
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                         errors=str(errors), skipped=str(skipped), time=f"{total:.3f}",
                         timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname())
    for result in results:
        case = ET.SubElement(node, "testcase", name=result.name, classname=f"{suite}.scenarios",
                             file=result.path, time=f"{result.seconds:.3f}")
        if result.catalog_id:
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="catalog_id", value=result.catalog_id)
        if result.status == "failed":
            first = result.failures[0] if result.failures else "failed"
            failure = ET.SubElement(case, "failure", message=escape(first), type="ExpectationFailed")
            failure.text = "\n".join(map(escape, result.failures))
        elif result.status in ("error", "interrupted"):
            first = result.failures[0] if result.failures else result.status
            error = ET.SubElement(case, "error", message=escape(first),
                                  type="Interrupted" if result.status == "interrupted" else "ScenarioError")
            error.text = "\n".join(map(escape, result.failures))
        elif result.status == "skipped":
            ET.SubElement(case, "skipped", message=result.skipped or "skipped")
        lines = [f"{f.rule} ({f.severity}): {f.summary}" for f in result.findings]
        lines += [f"note: {note}" for note in result.notes]
        if lines:
            ET.SubElement(case, "system-out").text = "\n".join(map(escape, lines))  # XML allows no control codes
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_junit(results: list[ScenarioResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    from redisprobe.errors import ProbeError
    from redisprobe.targets.url import redact

    root = junit_xml(results).getroot()
    text = redact(ET.tostring(root, encoding="unicode"))
    try:
        path.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + text, encoding="utf-8")
    except OSError as exc:
        raise ProbeError(f"cannot write {str(path)!r}: {exc.strerror}") from None
