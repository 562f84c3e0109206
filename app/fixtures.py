"""What the demo, the soak and the benches run on, made on the spot from what the installed packages ship
(nothing downloaded): the demo's noisy call (a talking portrait, a second voice, street noise) and a synthetic
clip (no face, no speech) where no text-to-speech engine is installed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avcall.models.data.portrait import speak, voice, write_talking_portrait
from avcall.pipelines.frames import SAMPLE_RATE
from avcall.pipelines.sinks.mp4 import Mp4Sink
from avcall.pipelines.sources.synthetic import synthetic_frames

SCRIPT = ("anna will send the budget on friday", "please call me back tomorrow morning")
TALKER_LINE = "a bitter baker turned along the chair"
SIR_DB, SNR_DB = 6.0, 10.0
PAUSE_S = 2.5  # between the script's two lines: the speaker listens while the second voice talks


async def write_synthetic_clip(path: Path, seconds: float = 4.0, fps: int = 25) -> None:
    sink = Mp4Sink(path, video_size=(320, 240), fps=fps)
    await sink.start()
    try:
        for frame in synthetic_frames(seconds, fps=fps, events=[0.5, 1.5, 2.5, 3.5]):
            await sink.process(frame)
        await sink.flush()
    finally:
        await sink.stop()
        sink.shutdown_worker()


@dataclass
class Call:
    clean: np.ndarray
    noisy: np.ndarray


def make_call(path: Path, fps: float | None = None) -> Call | None:
    """The noisy call clip at `path` (None without a TTS engine), its video at `fps` (default 25). The speaker
    says the script's two lines with a pause between them; the second voice talks over the first line and again
    in the pause (where the speaker listens: the lip gate's case)."""
    from avcall.models.data.noise import make_noise, mix_at_snr
    from avcall.models.data.turns import silences

    made = {}

    def soundtrack(clean: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(7)
        other = voice("flite:kal") or voice("flite:slt")
        talk, _ = speak(other, [TALKER_LINE], gap_s=0.0)
        talk = talk[SAMPLE_RATE // 2:]  # its lead-in off
        track = np.zeros(len(clean), np.float32)
        track[SAMPLE_RATE:SAMPLE_RATE + len(talk)] = talk[:max(0, len(clean) - SAMPLE_RATE)]
        pause = max(silences([(0.0, len(clean) / SAMPLE_RATE)], clean), key=lambda g: g[1] - g[0], default=None)
        if pause is not None:  # 150 ms after the first line, a usual gap between turns
            start, room = int((pause[0] + 0.15) * SAMPLE_RATE), int((pause[1] - pause[0] - 0.3) * SAMPLE_RATE)
            track[start:start + min(room, len(talk))] += talk[:room]
        noise = make_noise("traffic", len(clean), rng)
        noisy = clean + mix_at_snr(clean, track, SIR_DB) + mix_at_snr(clean, noise, SNR_DB)
        gain = min(1.0, 0.95 / float(np.abs(noisy).max()))
        made["clean"], made["noisy"] = clean * gain, (noisy * gain).astype(np.float32)
        return made["noisy"]

    if not write_talking_portrait(path, SCRIPT, soundtrack, fps, gap_s=PAUSE_S):
        return None
    return Call(made["clean"], made["noisy"])
