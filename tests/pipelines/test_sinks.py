"""Sinks write what they are given, where they are told, on the session clock."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import soundfile

from avcall.pipelines.frames import AudioFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sinks.wav import WavSink
from avcall.pipelines.sources.base import Source, SourceEnded


class Frames(Source):
    def __init__(self, frames):
        self.frames = list(frames)

    async def recv(self):
        if not self.frames:
            raise SourceEnded
        return self.frames.pop(0)


def test_wav_sink_keeps_timing_across_a_gap(tmp_path):
    ones = np.ones(160, np.float32) * 0.5
    frames = [AudioFrame(pts=i * 0.01, samples=ones) for i in range(10)]
    frames += [AudioFrame(pts=0.2 + i * 0.01, samples=ones) for i in range(10)]  # 100 ms missing
    asyncio.run(Pipeline([Frames(frames)], [WavSink(tmp_path / "out.wav")], live=False).run())
    audio, rate = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 16000 and len(audio) == 16000 * 0.3
    assert np.all(audio[1600:3200] == 0) and np.allclose(audio[3200:], 0.5)


def test_runtime_path_imports_no_torch():
    code = ("import sys, avcall.app.cli, avcall.app.process, avcall.app.bench, avcall.app.demo; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
