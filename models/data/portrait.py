"""A talking portrait made on the spot: a text-to-speech voice says the lines, the corpus's lip model turns their
phones into lip movements and the renderer animates the bundled portrait along them. The demo's speaker, the
benches' and tests' peers, and the generated faces the lip gate's net learns from (its avcall train recipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avcall.pipelines.frames import SAMPLE_RATE

DEMO_LINE = "Can you hear me now? I think the video is working again, so let us get started."


def voice(voice_id: str):
    """The installed text-to-speech voice `voice_id` (e.g. "flite:slt"), else the first one, else None."""
    from avcall.models.data.tts import available_voices

    voices = [v for v in available_voices() if v.id == voice_id] or list(available_voices())
    return voices[0] if voices else None


def speak(tts_voice, lines, gap_s: float = 0.6):
    """The lines said one after another with `gap_s` between them: (audio, Timing), 0.5 s lead-in."""
    from avcall.pipelines.face.phonemes import Phone, Timing
    from avcall.models.data.tts import synthesize

    audio, phones, t = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], 0.5
    for line in lines:
        speech = synthesize(tts_voice, line)
        phones += [Phone(p.phone, p.start + t, p.end + t) for p in speech.timing.phones]
        audio += [speech.audio, np.zeros(int(gap_s * SAMPLE_RATE), np.float32)]
        t += len(speech.audio) / SAMPLE_RATE + gap_s
    return np.concatenate(audio), Timing(tuple(phones))


def write_talking_portrait(path: Path, text: str = DEMO_LINE, audio_fn=None, fps: float | None = None,
                           gap_s: float = 0.6) -> bool:
    """The bundled portrait saying `text` (a line, or lines with pauses between them) at `fps` (default: the
    corpus's 25); False when no text-to-speech engine is installed. `audio_fn(clean)` may change the
    soundtrack (the demo adds a talker and noise)."""
    from avcall.pipelines.face.lip_track import LIP_FPS
    from avcall.pipelines.face.lip_model import LipModel
    from avcall.pipelines.face.render import render_video

    tts_voice = voice("flite:slt")
    if tts_voice is None:
        return False
    clean, timing = speak(tts_voice, [text] if isinstance(text, str) else list(text), gap_s)
    clean = 0.5 * clean / max(float(np.abs(clean).max()), 1e-6)
    fps = fps or LIP_FPS
    frames = int(np.ceil(len(clean) / SAMPLE_RATE * fps))
    track = LipModel.load().track(timing, frames, np.random.default_rng(0), fps=fps, artefacts=False)
    render_video(path, track, audio_fn(clean) if audio_fn else clean)
    return True
