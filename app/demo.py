"""`avcall demo`: the whole pipeline on a noisy "call" made on the spot, with nothing downloaded.

The call is made from what the installed packages ship: a text-to-speech voice says two corpus sentences,
the corpus's lip model turns their phones into lip movements and the renderer animates the bundled portrait
(scikit-image's astronaut) along them; a second voice talks over it 6 dB lower and a generated street noise
plays under both at 10 dB; between its two lines the speaker pauses and listens while the second voice
talks (what the lip gate holds back). The pipeline (face tracking, lip features, the speech enhancer when its weights
are shipped, captions) runs over that clip, and `./avcall-demo/` gets:

  input.mp4      the noisy call as recorded
  annotated.mp4  the processed call: the lip tracking drawn, the enhanced voice
  enhanced.wav   the enhanced voice (with the shipped weights)
  captions.vtt / captions.srt   what the captioner heard
  avatar.mp4     the portrait speaking with the call's voice alone (when the talking face ships)
  emotion.jsonl / emotion.png   what the emotion reader read from the face and the voice (when its nets ship)
  report.html    spectrograms before and after, the captions against the script, the metrics against the
                 peers (RNNoise, noisereduce) on the same clip, the talking face, the latency of each stage
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avcall.pipelines.frames import SAMPLE_RATE
from avcall.pipelines.sinks.atomic import write_text_atomic

from .fixtures import SCRIPT, SIR_DB, SNR_DB, Call, make_call, write_synthetic_clip
from .process import ProcessConfig, run_process

# --------------------------------------------------------------------------------------------- report
def spectrogram_png(audio: np.ndarray, title: str, spans: list | None = None) -> str:
    """A log spectrogram as an inline PNG (data URL), drawn with OpenCV (no plotting library needed); `spans`
    ([start, end] seconds) are marked by a bar along its top."""
    import cv2

    from avcall.pipelines.nets.enhancer_features import stft

    power = np.abs(stft(audio)).T ** 2  # (freq, time)
    db = 10 * np.log10(power + 1e-10)
    img = np.clip((db - (db.max() - 70)) / 70 * 255, 0, 255).astype(np.uint8)[::-1]
    img = cv2.resize(img, (min(900, max(300, img.shape[1])), 200), interpolation=cv2.INTER_AREA)
    img = cv2.applyColorMap(img, cv2.COLORMAP_MAGMA)
    seconds = len(audio) / SAMPLE_RATE
    for start, end in spans or ():
        x0, x1 = (int(img.shape[1] * t / seconds) for t in (start, end))
        img[:8, x0:max(x1, x0 + 1)] = (60, 200, 255)
    cv2.putText(img, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    return png_data_url(png.tobytes())


def wav_data_url(audio: np.ndarray) -> str:
    """16-bit WAV inline in the report, for its players."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def png_data_url(png: bytes) -> str:
    """A PNG inline in the report: report.html stands alone."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def peer_metrics(call: Call, enhanced: np.ndarray | None) -> dict[str, dict]:
    """SI-SDR, PESQ-wb and STOI against the clean voice for the noisy input, avcall (the call's own output)
    and every other noise suppressor that ships, with each one's real-time factor here and its latency."""
    from avcall.pipelines.suppressors import DEFAULT
    from avcall.pipelines.features import enhancers

    from .eval.baselines import MethodUnavailable, NoiseReduce, SuppressorMethod
    from .eval.metrics import pesq_wb, si_sdr, stoi_score

    outputs: dict[str, tuple[np.ndarray | None, dict]] = {"noisy": (call.noisy, {}),
                                                          f"avcall ({DEFAULT} + lip gate)": (enhanced, {})}
    audio_s = len(call.noisy) / 16_000
    for name in [n for n in enhancers() if n != DEFAULT] + ["noisereduce"]:
        try:
            method = NoiseReduce() if name == "noisereduce" else SuppressorMethod(name, name)
        except (ImportError, MethodUnavailable):
            continue  # the eval extra is not installed
        began = time.perf_counter()
        audio = method.enhance(call.noisy, None, 0.0)
        extra = {"rtf": round((time.perf_counter() - began) / audio_s, 3)}
        if name != "noisereduce":
            extra["latency_ms"] = method.suppressor.latency_ms
        outputs[name] = (audio, extra)
    out = {}
    base = si_sdr(call.clean, call.noisy)
    for name, (audio, extra) in outputs.items():
        if audio is None:
            continue
        value = si_sdr(call.clean, audio)
        out[name] = {"si_sdr": round(value, 2), "si_sdr_improvement": round(value - base, 2),
                     "pesq": _round(pesq_wb(call.clean, audio)), "stoi": _round(stoi_score(call.clean, audio))} | extra
    return out


def _round(x):
    return None if x is None else round(float(x), 3)


def make_avatar(clip: Path, outdir: Path, enhance: str) -> str:
    """avatar.mp4: the portrait speaking with the (enhanced) voice of the call; a strip of its frames as an
    inline PNG for the report."""
    import shutil
    import tempfile

    import av
    import cv2

    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        run_process(ProcessConfig(input=clip, outdir=Path(tmp), enhance=enhance, avatar="voice"), progress=False)
        shutil.move(str(Path(tmp) / "annotated.mp4"), outdir / "avatar.mp4")
    with av.open(str(outdir / "avatar.mp4")) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    picks = [frames[int(i)] for i in np.linspace(len(frames) * 0.15, len(frames) * 0.85, 6)]
    strip = cv2.resize(np.hstack(picks), None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", strip)
    return png_data_url(png.tobytes())


def write_report(path: Path, *, call: Call | None, enhanced: np.ndarray | None, captions: list[str],
                 metrics: dict, telemetry: dict, seconds: float, note: str, avatar_strip: str | None = None,
                 emotion_png: Path | None = None, other_captions: dict[str, str] | None = None) -> None:
    """`other_captions`: {what: captions of the same voice} (without the lip gate, another engine), shown beside
    the call's own."""
    from avcall.models.data.align import normalise

    from .eval.metrics import edit_alignment

    parts = [f"<h1>avcall demo</h1><p>{html.escape(note)}</p>"]
    if call is not None:
        held = telemetry.get("stages", {}).get("lip_gate", {}).get("held_spans", [])
        images = [spectrogram_png(call.noisy, f"input: voice + talker {SIR_DB:.0f} dB lower + street noise at "
                                  f"{SNR_DB:.0f} dB", held)]
        if enhanced is not None:
            images.append(spectrogram_png(enhanced, "enhanced by avcall", held))
            players = "".join(f"<figure><figcaption>{name}</figcaption><audio controls src='{wav_data_url(a)}'>"
                              "</audio></figure>" for name, a in (("input", call.noisy), ("avcall", enhanced)))
            parts.append(f"<h2>Listen</h2><div style='display:flex;gap:2rem'>{players}</div>")
        images.append(spectrogram_png(call.clean, "the clean voice (reference)"))
        gate = (f"<p>The orange bars: where the lip gate held another voice back while the speaker's lips were "
                f"still ({sum(e - s for s, e in held):.1f} s in {len(held)} spans).</p>") if held else ""
        parts.append("<h2>Spectrograms</h2>" + gate
                     + "".join(f'<img alt="spectrogram" src="{src}">' for src in images))
        from avcall.pipelines.asr import DEFAULT_ENGINE

        script = " ".join(SCRIPT)
        rows = f"<tr><th>script</th><td>{html.escape(script)}</td><td></td></tr>"
        shown = {f"{DEFAULT_ENGINE} with the lip gate (the default)": " ".join(captions)} | (other_captions or {})
        for engine, heard in shown.items():
            errors, _ = edit_alignment(normalise(script), normalise(heard))
            rows += (f"<tr><th>{html.escape(engine)}</th><td>{html.escape(heard) or '<em>none</em>'}</td>"
                     f"<td>{100 * errors / max(len(normalise(script)), 1):.0f}% word errors</td></tr>")
        parts.append(f"<h2>Captions</h2><table>{rows}</table>")
    if metrics:
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{m['si_sdr']:.2f}</td><td>{m['si_sdr_improvement']:+.2f}"
                       f"</td><td>{m['pesq'] if m['pesq'] is not None else '–'}</td>"
                       f"<td>{m['stoi'] if m['stoi'] is not None else '–'}</td><td>{m.get('rtf', '–')}</td>"
                       f"<td>{m.get('latency_ms', '–')}</td></tr>" for name, m in metrics.items())
        parts.append("<h2>Against the peers, on this clip</h2><table><tr><th>method</th><th>SI-SDR dB</th>"
                     "<th>improvement dB</th><th>PESQ-wb</th><th>STOI</th><th>CPU real-time factor</th>"
                     f"<th>latency ms</th></tr>{rows}</table><p>The whole comparison on real clips: "
                     "bench/enhance_eval.json and the README.</p>")
    if emotion_png is not None and emotion_png.is_file():
        rendered = " (the rendered portrait has no real expression to read)" if call is not None else ""
        parts.append("<h2>Emotion</h2><p>What the emotion reader read from the face and the voice of this call, "
                     f"four times a second{rendered}: emotion.png, the readings in emotion.jsonl.</p>"
                     f"<figure><img alt='emotion timeline' src='{png_data_url(emotion_png.read_bytes())}'>"
                     "<figcaption>The face and voice fusion was trained on label-matched pairs from different "
                     "people (a face and a voice with the same emotion label), not on one person seen and heard."
                     "</figcaption></figure>")
    if avatar_strip:
        parts.append("<h2>The talking face</h2><p>The bundled portrait driven by the call's (enhanced) voice alone "
                     f"(avatar.mp4):</p><img alt='avatar frames' src='{avatar_strip}'>")
    stage_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s.get('service_ms', {}).get('p50', 0):.2f}</td>"
        f"<td>{s.get('service_ms', {}).get('p95', 0):.2f}</td><td>{s.get('frames_in', 0)}</td></tr>"
        for name, s in telemetry.get("stages", {}).items())
    parts.append("<h2>Latency per stage</h2><table><tr><th>stage</th><th>p50 ms</th><th>p95 ms</th>"
                 f"<th>frames</th></tr>{stage_rows}</table><p>The whole demo took {seconds:.0f} s.</p>")
    style = ("body{font:15px/1.4 system-ui,sans-serif;max-width:960px;margin:1rem auto;padding:0 1rem;color:#1a1a1a}"
             "img{display:block;width:100%;margin:.3rem 0}table{border-collapse:collapse;margin:.5rem 0}"
             "td,th{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:left}")
    write_text_atomic(path, f"<!doctype html><html><head><meta charset='utf-8'><title>avcall demo</title>"
                            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def run_demo(outdir: Path = Path("avcall-demo"), clip: Path | None = None) -> str:
    from avcall.pipelines.features import available, default_enhancer
    from avcall.pipelines.suppressors import DEFAULT

    began = time.monotonic()
    outdir.mkdir(parents=True, exist_ok=True)
    call = None
    steps = tqdm(total=3, desc="demo", file=sys.stderr, bar_format="{desc}: {n}/{total} {postfix}")
    if clip is None:
        clip = outdir / "input.mp4"
        steps.set_postfix_str("making the noisy call")
        call = make_call(clip)
        if call is None:
            asyncio.run(write_synthetic_clip(clip))
    steps.update(1)
    enhance = default_enhancer()
    steps.set_postfix_str("running the pipeline")
    emotion = available("emotion")
    result = run_process(ProcessConfig(input=clip, outdir=outdir, enhance=enhance, captions=True, emotion=emotion),
                         progress=False)
    steps.update(1)
    telemetry = json.loads((outdir / "telemetry.json").read_text())
    enhanced = None
    if enhance != "off":
        import soundfile as sf

        enhanced, _ = sf.read(outdir / "enhanced.wav", dtype="float32")  # lined up with the input
    captions = _caption_texts(outdir / "captions.vtt")
    avatar_strip = None
    if available("talking_face"):
        steps.set_postfix_str("the talking face")
        avatar_strip = make_avatar(clip, outdir, enhance)
    steps.set_postfix_str("scoring and writing the report")
    other_captions = None
    if call is not None:  # the same voice captioned without the lip gate, and by the engine of before
        from avcall.pipelines.asr import DEFAULT_ENGINE, make_engine

        from .eval.captions import caption

        other_captions = {}
        for label, engine in ((f"{DEFAULT_ENGINE} without the lip gate", DEFAULT_ENGINE),
                              ("pocketsphinx", "pocketsphinx")):
            emitted = caption(call.noisy, [], make_engine(engine))
            other_captions[label] = " ".join(c.text for c, _ in emitted if c.kind == "final")
    metrics = peer_metrics(call, enhanced[:len(call.noisy)] if enhanced is not None else None) if call else {}
    note = (f"The rendered portrait says two corpus sentences while a second voice talks {SIR_DB:.0f} dB lower and "
            f"street noise plays at {SNR_DB:.0f} dB." if call else f"Input: {clip}.")
    if enhance == "off":
        note += f" The {DEFAULT} noise suppressor is not installed (scripts/setup.sh): the voice is not enhanced."
    write_report(outdir / "report.html", call=call, enhanced=enhanced, captions=captions, metrics=metrics,
                 telemetry=telemetry, seconds=time.monotonic() - began, note=note, avatar_strip=avatar_strip,
                 emotion_png=outdir / "emotion.png" if emotion else None, other_captions=other_captions)
    steps.update(1)
    steps.close()
    tracker = telemetry["stages"].get("face_tracker", {}).get("service_ms", {})
    lines = [f"avcall demo: {clip}",
             f"  {result.media_seconds:.1f} s processed; face found in {result.face_frames}/{result.video_frames} frames",
             f"  tracking: {tracker.get('p50', 0):.1f} ms per frame (p50), {tracker.get('p95', 0):.1f} ms (p95)",
             f"  captions: {' / '.join(captions) or '(none)'}"]
    if f"avcall ({DEFAULT} + lip gate)" in metrics:
        m, n = metrics[f"avcall ({DEFAULT} + lip gate)"], metrics["noisy"]
        lines.append(f"  enhanced: SI-SDR {n['si_sdr']:.1f} -> {m['si_sdr']:.1f} dB, STOI {n['stoi']} -> {m['stoi']}")
    held = telemetry["stages"].get("lip_gate", {}).get("held_spans", [])
    if held:
        lines.append(f"  lip gate: another voice held back for {sum(e - s for s, e in held):.1f} s while the speaker "
                     "listened")
    if emotion:
        lines.append(f"  emotion: {_emotion_summary(outdir / 'emotion.jsonl')}")
    lines.append(f"  report: {outdir / 'report.html'} (and input.mp4, annotated.mp4, captions.vtt there)")
    return "\n".join(lines)


def _caption_texts(vtt: Path) -> list[str]:
    if not vtt.exists():
        return []
    blocks = vtt.read_text().strip().split("\n\n")[1:]
    return [b.split("\n", 2)[2] for b in blocks if b.count("\n") >= 2]


def _emotion_summary(jsonl: Path) -> str:
    """How many readings, and the emotion that led most often."""
    from collections import Counter

    readings = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    if not readings:
        return "no reading"
    leading, n = Counter(r["leading"] for r in readings).most_common(1)[0]
    return f"{len(readings)} readings, {leading} leading in {100 * n / len(readings):.0f}% (emotion.png)"
