"""The demo report shows the call's captions (the default engine through the lip gate) beside those of the same
voice without the gate and of PocketSphinx, each scored against the script; it marks where the gate held another
voice back and plays the input and the output."""

from __future__ import annotations

import re

import numpy as np

from avcall.app.demo import write_report
from avcall.app.fixtures import Call
from avcall.pipelines.asr import DEFAULT_ENGINE


def test_the_report_shows_both_engines(tmp_path):
    call = Call(clean=np.zeros(16_000, np.float32), noisy=np.zeros(16_000, np.float32))
    write_report(tmp_path / "report.html", call=call, enhanced=None, captions=["Anna will send the budget"],
                 metrics={}, telemetry={}, seconds=1.0, note="a note",
                 other_captions={f"{DEFAULT_ENGINE} without the lip gate": "Anna will send a bitter baker",
                                 "pocketsphinx": "animals then"})
    table = re.search(r"<h2>Captions</h2>(.*?)</table>", (tmp_path / "report.html").read_text()).group(1)
    rows = re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td><td>(.*?)</td></tr>", table)
    assert [r[0] for r in rows] == ["script", f"{DEFAULT_ENGINE} with the lip gate (the default)",
                                    f"{DEFAULT_ENGINE} without the lip gate", "pocketsphinx"]
    assert rows[1][1] == "Anna will send the budget" and rows[3][1] == "animals then"
    assert rows[1][2].endswith("% word errors") and rows[3][2] == "100% word errors"


def test_the_report_marks_where_the_gate_held_and_plays_both(tmp_path):
    rng = np.random.default_rng(0)
    call = Call(clean=rng.standard_normal(32_000).astype(np.float32) * 0.1,
                noisy=rng.standard_normal(32_000).astype(np.float32) * 0.1)
    telemetry = {"stages": {"lip_gate": {"held_spans": [[0.5, 1.25], [1.5, 1.75]]}}}
    write_report(tmp_path / "report.html", call=call, enhanced=call.clean, captions=[], metrics={},
                 telemetry=telemetry, seconds=1.0, note="a note")
    page = (tmp_path / "report.html").read_text()
    assert "held another voice back" in page and "1.0 s in 2 spans" in page
    assert page.count("<audio controls src='data:audio/wav;base64,") == 2
