"""The demo report shows the captions of the default engine and of PocketSphinx on the same voice, each
scored against the script."""

from __future__ import annotations

import re

import numpy as np

from avcall.app.demo import Call, write_report
from avcall.pipelines.asr import DEFAULT_ENGINE


def test_the_report_shows_both_engines(tmp_path):
    call = Call(clean=np.zeros(16_000, np.float32), noisy=np.zeros(16_000, np.float32))
    write_report(tmp_path / "report.html", call=call, enhanced=None, captions=["Anna will send the budget"],
                 metrics={}, telemetry={}, seconds=1.0, note="a note",
                 other_captions={"pocketsphinx": "animals then"})
    table = re.search(r"<h2>Captions</h2>(.*?)</table>", (tmp_path / "report.html").read_text()).group(1)
    rows = re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td><td>(.*?)</td></tr>", table)
    assert [r[0] for r in rows] == ["script", f"{DEFAULT_ENGINE} (the default)", "pocketsphinx"]
    assert rows[1][1] == "Anna will send the budget" and rows[2][1] == "animals then"
    assert rows[1][2].endswith("% word errors") and rows[2][2] == "100% word errors"
