"""scripts/reliability_report.py regenerates docs/RELIABILITY.md but keeps its hand-written sections."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="tests.fuzz.test_image_mutations" name="test_x" time="1.5">
<properties><property name="cases" value="420"/></properties></testcase>
</testsuite></testsuites>"""


def test_regenerating_keeps_the_hand_written_sections(tmp_path):
    xml, doc = tmp_path / "junit.xml", tmp_path / "RELIABILITY.md"
    xml.write_text(JUNIT)
    hand_written = (REPO / "docs" / "RELIABILITY.md").read_text().split("<!-- Hand-written", 1)[1]
    doc.write_text("# old generated part\n\n<!-- Hand-written" + hand_written)
    subprocess.run([sys.executable, str(REPO / "scripts" / "reliability_report.py"), "--xml", str(xml),
                    "--out", str(doc)], check=True, capture_output=True)
    text = doc.read_text()
    assert "# old generated part" not in text and "| Fuzz: image mutations |" in text and "| 420 |" in text
    assert text.endswith("<!-- Hand-written" + hand_written)
    assert "## Image mutation fuzzing" in hand_written
