"""How well models/data/align.py times words and phones, and how fast: writes a JSON report.

    python scripts/eval_aligner.py [-o bench/aligner.json] [--sentences N]

1. Real speech against hand labels: TIMIT's free sample LDC93S1 (../shared/data/speech/DeepSpeech_LDC93S1.wav,
   TIMIT TRAIN/DR1/FCJF0/SA1), its word boundaries and the first 14 phone boundaries from TIMIT's .WRD/.PHN
   (REFERENCE below: where they were found).
2. Synthetic speech against exact truth: flite says sentences in five voices and prints every phone's end time;
   the aligner's phone boundaries are compared with flite's wherever the two phone sequences agree.
3. Real-time factor of align() and recognise() on this machine (and the transcribed real clips of
   ../shared/data/speech when present).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from avcall.models.data.align import SAMPLE_RATE, align, normalise, recognise, warm_up
from avcall.pipelines.face.phonemes import SILENCE, Timing
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# TIMIT TRAIN/DR1/FCJF0/SA1 = the LDC's free sample LDC93S1 (16 kHz, 46797 samples, peak 2790: the same file
# as ../shared/data/speech/DeepSpeech_LDC93S1.wav, which has 46797 samples peaking at 2790/32768).
# Found in the public repository fancyerii/fancyerii.github.io, file _kaldi/timit.md (commit 62a6d5f5e316),
# which quotes SA1.WRD in full and the first 14 lines of SA1.PHN. Times are samples at 16 kHz.
REFERENCE_TEXT = "She had your dark suit in greasy wash water all year."
REFERENCE_WRD = [
    (3050, 5723, "she"), (5723, 10337, "had"), (9190, 11517, "your"), (11517, 16334, "dark"),
    (16334, 21199, "suit"), (21199, 22560, "in"), (22560, 28064, "greasy"), (28064, 33360, "wash"),
    (33754, 37556, "water"), (37556, 40313, "all"), (40313, 44586, "year"),
]
REFERENCE_PHN = [
    (0, 3050, "h#"), (3050, 4559, "sh"), (4559, 5723, "ix"), (5723, 6642, "hv"), (6642, 8772, "eh"),
    (8772, 9190, "dcl"), (9190, 10337, "jh"), (10337, 11517, "ih"), (11517, 12500, "dcl"), (12500, 12640, "d"),
    (12640, 14714, "ah"), (14714, 15870, "kcl"), (15870, 16334, "k"), (16334, 18088, "s"),
]
# The TIMIT phone boundaries that have one counterpart in a CMU-dictionary alignment, as (sample, word index,
# phone index in that word, expected phone): TIMIT writes closures (dcl, kcl) as phones of their own, merges
# "d y" of "had your" into "jh" and has no "r" in this speaker's "dark", so only these boundaries match one to one.
REFERENCE_PHONE_BOUNDARIES = [
    (3050, 0, 0, "sh"),  # h# | sh        silence -> she
    (4559, 0, 1, "iy"),  # sh | ix
    (5723, 1, 0, "hh"),  # ix | hv        she -> had
    (6642, 1, 1, "ae"),  # hv | eh
    (8772, 1, 2, "d"),   # eh | dcl
    (10337, 2, 1, None),  # jh | ih      (y | uh or y | ao: "your" has two pronunciations)
    (11517, 3, 0, "d"),  # ih | dcl       your -> dark
    (12640, 3, 1, "aa"),  # d | ah
    (14714, 3, 3, "k"),  # ah | kcl       (our r sits inside TIMIT's r-coloured vowel)
    (16334, 4, 0, "s"),  # k | s          dark -> suit
    (18088, 4, 1, "uw"),  # s | ux
]

# Harvard sentences (IEEE 1969 recommended practice; public domain), lists 1-4.
SENTENCES = """The birch canoe slid on the smooth planks.
Glue the sheet to the dark blue background.
It's easy to tell the depth of a well.
These days a chicken leg is a rare dish.
Rice is often served in round bowls.
The juice of lemons makes fine punch.
The box was thrown beside the parked truck.
The hogs were fed chopped corn and garbage.
Four hours of steady work faced us.
A large size in stockings is hard to sell.
The boy was there when the sun rose.
A rod is used to catch pink salmon.
The source of the huge river is the clear spring.
Kick the ball straight and follow through.
Help the woman get back to her feet.
A pot of tea helps to pass the evening.
Smoky fires lack flame and heat.
The soft cushion broke the man's fall.
The salt breeze came across from the sea.
The girl at the booth sold fifty bonds.
The small pup gnawed a hole in the sock.
The fish twisted and turned on the bent hook.
Press the pants and sew a button on the vest.
The swan dive was far short of perfect.
The beauty of the view stunned the young boy.
Two blue fish swam in the tank.
Her purse was full of useless trash.
The colt reared and threw the tall rider.
It snowed, rained, and hailed the same morning.
Read verse out loud for pleasure.
Hoist the load to your left shoulder.
Take the winding path to reach the lake.
Note closely the size of the gas tank.
Wipe the grease off his dirty face.
Mend the coat before you go out.
The wrist was badly strained and hung limp.
The stray cat gave birth to kittens.
The young girl gave no clear response.
The meal was cooked before the bell rang.
What joy there is in living.""".splitlines()
VOICES = ("slt", "kal16", "awb", "rms", "kal")


def flite_say(text: str, voice: str, workdir: Path) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """flite's audio (16 kHz float32) and its phones as (phone, start, end) seconds, "pau" -> "sil"."""
    wav = workdir / f"{voice}.wav"
    run = subprocess.run(["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav)],
                         capture_output=True, text=True, timeout=60, check=True)
    audio, sr = sf.read(wav, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        audio = resample_poly(audio, SAMPLE_RATE, sr).astype(np.float32)
    phones, t = [], 0.0
    for item in run.stdout.split():
        name, _, end = item.rpartition(":")
        end = float(end)
        phones.append((SILENCE if name == "pau" else name, t, end))
        t = end
    return audio, phones


_SAME = {"ax": "ah", "axr": "er"}  # flite writes reduced vowels that CMUdict writes as ah / er


def _merged(seq: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    out: list[tuple[str, float, float]] = []
    for p, a, b in seq:
        p = _SAME.get(p, p)
        if out and p == SILENCE and out[-1][0] == SILENCE:
            out[-1] = (SILENCE, out[-1][1], b)
        elif b > a or p != SILENCE:
            out.append((p, a, b))
    return out


def boundary_errors(truth: list[tuple[str, float, float]], timing: Timing) -> list[tuple[float, bool]]:
    """(|our boundary - true boundary| in seconds, whether it is a silence edge) for each boundary between two
    consecutive phones that both sequences have in the same place (difflib matching blocks, so inserted,
    deleted or substituted phones and the boundaries around them are left out)."""
    a = _merged(truth)
    b = _merged([(p.phone, p.start, p.end) for p in timing.phones])
    matcher = difflib.SequenceMatcher(None, [p for p, _, _ in a], [p for p, _, _ in b], autojunk=False)
    errors = []
    for i, j, size in matcher.get_matching_blocks():
        for k in range(1, size):
            errors.append((abs(a[i + k][1] - b[j + k][1]), SILENCE in (a[i + k - 1][0], a[i + k][0])))
    return errors


def stats_ms(errors: list[float]) -> dict:
    e = np.asarray(errors) * 1000.0
    if len(e) == 0:
        return {"n": 0}
    return {"n": len(e), "median_ms": round(float(np.median(e)), 1), "mean_ms": round(float(e.mean()), 1),
            "p90_ms": round(float(np.percentile(e, 90)), 1), "max_ms": round(float(e.max()), 1),
            "within_20ms": round(float(np.mean(e <= 20)), 3), "within_50ms": round(float(np.mean(e <= 50)), 3)}


def eval_real(results: dict) -> None:
    wav = SHARED / "speech" / "DeepSpeech_LDC93S1.wav"
    if not wav.exists():
        results["real_reference"] = {"available": False, "why": f"{wav} is absent"}
        return
    audio, sr = sf.read(wav, dtype="float32")
    assert sr == SAMPLE_RATE and len(audio) == 46797, (sr, len(audio))
    timing = align(audio, REFERENCE_TEXT)
    words = timing.words
    assert [w.word for w in words] == [w for _, _, w in REFERENCE_WRD], [w.word for w in words]
    start_err, end_err = [], []
    for w, (s, e, _) in zip(words, REFERENCE_WRD):
        start_err.append(abs(w.start - s / SAMPLE_RATE))
        end_err.append(abs(w.end - e / SAMPLE_RATE))
    # each word's phones, to pick the boundaries that have TIMIT counterparts
    word_phones = [[p for p in timing.phones if p.phone != SILENCE and w.start <= p.start < w.end] for w in words]
    phone_err, picked = [], []
    for sample, wi, pi, expect in REFERENCE_PHONE_BOUNDARIES:
        phones = word_phones[wi]
        if pi < len(phones) and (expect is None or phones[pi].phone == expect):
            err = abs(phones[pi].start - sample / SAMPLE_RATE)
            phone_err.append(err)
            picked.append([sample, phones[pi].phone, round(phones[pi].start, 4), round(err * 1000, 1)])
    results["real_reference"] = {
        "available": True,
        "clip": "../shared/data/speech/DeepSpeech_LDC93S1.wav (TIMIT LDC93S1 = TRAIN/DR1/FCJF0/SA1, hand labelled)",
        "reference_source": "github.com/fancyerii/fancyerii.github.io _kaldi/timit.md (quotes SA1.WRD, SA1.PHN)",
        "method": timing.method,
        "word_boundaries": {**stats_ms(start_err + end_err), "starts": stats_ms(start_err), "ends": stats_ms(end_err),
                            "note": "all 22 word starts and ends; TIMIT lets 'your' start inside 'had' (the d-y of "
                                    "'had your' is one jh), which gives the largest error (54 ms)"},
        "phone_boundaries": {**stats_ms(phone_err),
                             "note": "the 11 of TIMIT's first 14 phone boundaries (to 1.13 s) that have one "
                                     "counterpart in a CMUdict alignment; the rest of SA1.PHN was not found"},
        "phone_boundary_detail": [["timit_sample", "our_phone", "our_start_s", "error_ms"], *picked],
        "words": [[w.word, round(w.start, 3), round(w.end, 3), round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3)]
                  for w, (s, e, _) in zip(words, REFERENCE_WRD)],
    }


def eval_synthetic(results: dict, n_sentences: int) -> tuple[float, float]:
    if shutil.which("flite") is None:
        results["synthetic"] = {"available": False, "why": "flite is not installed"}
        return 0.0, 0.0
    errors, per_voice, words_ok, n = [], {}, 0, 0
    audio_s = compute_s = 0.0
    methods: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES[:n_sentences]):
            voice = VOICES[i % len(VOICES)]
            audio, truth = flite_say(text, voice, Path(tmp))
            t0 = time.perf_counter()
            timing = align(audio, text)
            compute_s += time.perf_counter() - t0
            audio_s += len(audio) / SAMPLE_RATE
            e = boundary_errors(truth, timing)
            errors += e
            per_voice.setdefault(voice, []).extend(err for err, _ in e)
            words_ok += [w.word for w in timing.words] == normalise(text)
            methods[timing.method] = methods.get(timing.method, 0) + 1
            n += 1
    results["synthetic"] = {
        "available": True, "utterances": n, "voices": list(VOICES), "word_sequence_correct": words_ok,
        "methods": methods, "phone_boundaries": stats_ms([err for err, _ in errors]),
        "phone_boundaries_between_speech_phones": stats_ms([err for err, edge in errors if not edge]),
        "phone_boundaries_at_silence_edges": stats_ms([err for err, edge in errors if edge]),
        "per_voice": {v: stats_ms(e) for v, e in per_voice.items()},
        "note": "flite -psdur phone end times are exact for its own audio; only boundaries between phones that "
                "flite and the aligner agree on (difflib matching blocks, ax=ah, axr=er, pau=sil) are compared",
    }
    return audio_s, compute_s


def eval_speed(results: dict, synth_audio_s: float, synth_compute_s: float) -> None:
    real = []
    manifest = SHARED / "MANIFEST.tsv"
    if manifest.exists():
        import csv

        with open(manifest, newline="") as f:
            for row in csv.reader(f, delimiter="\t"):
                if len(row) > 6 and row[1].startswith("speech/") and "Transcript" in row[6]:
                    quoted = row[6].split("Transcript", 1)[1].split('"')
                    if len(quoted) >= 3:
                        real.append((SHARED / row[1], quoted[1]))
    align_audio = align_compute = rec_audio = rec_compute = 0.0
    clips = []
    for path, text in real:
        if not path.exists():
            continue
        audio, sr = sf.read(path, dtype="float32")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if sr != SAMPLE_RATE:
            audio = resample_poly(audio, SAMPLE_RATE, sr).astype(np.float32)
        dur = len(audio) / SAMPLE_RATE
        t0 = time.perf_counter()
        aligned = align(audio, text)
        t1 = time.perf_counter()
        heard = recognise(audio)
        t2 = time.perf_counter()
        align_audio += dur
        align_compute += t1 - t0
        rec_audio += dur
        rec_compute += t2 - t1
        ref = normalise(text)
        hyp = [w.word for w in heard.words]
        # the transcript of another clip: the aligner should notice that it does not fit
        other = real[(real.index((path, text)) + 3) % len(real)][1]
        wrong = align(audio, other)
        clips.append({"clip": path.name, "seconds": round(dur, 2), "align_method": aligned.method,
                      "align_rtf": round((t1 - t0) / dur, 3), "recognise_rtf": round((t2 - t1) / dur, 3),
                      "recognised": " ".join(hyp), "recognise_wer": round(_wer(ref, hyp), 3),
                      "wrong_transcript_method": wrong.method})
    cpu = os.cpu_count()
    results["speed"] = {
        "machine": f"{platform.machine()}, {cpu} CPU cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "align_rtf_synthetic": round(synth_compute_s / synth_audio_s, 3) if synth_audio_s else None,
        "align_rtf_real": round(align_compute / align_audio, 3) if align_audio else None,
        "recognise_rtf_real": round(rec_compute / rec_audio, 3) if rec_audio else None,
        "note": "real-time factor = compute seconds / audio seconds, one thread, Decoder already loaded; "
                "align() includes the phone-loop pass of its mismatch check",
        "real_clips": clips,
    }
    if clips:
        plain = [c["align_method"].startswith("align:pocketsphinx") for c in clips]
        caught = [not c["wrong_transcript_method"].startswith("align:pocketsphinx") for c in clips]
        results["transcript_check"] = {
            "right_transcript_aligned": f"{sum(plain)}/{len(clips)}",
            "wrong_transcript_caught": f"{sum(caught)}/{len(clips)}",
            "recognise_mean_wer": round(float(np.mean([c["recognise_wer"] for c in clips])), 3),
            "note": "each transcribed real clip aligned with its own transcript and with another clip's; "
                    "caught = the Timing says recognise+...+mismatch or even-spread instead of align. In-sample: "
                    "align.MISMATCH_PER_FRAME was chosen looking at these same clips",
        }


def _wer(ref: list[str], hyp: list[str]) -> float:
    d = np.arange(len(hyp) + 1)
    for r in ref:
        prev, d[0] = d.copy(), d[0] + 1
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[-1]) / max(1, len(ref))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "bench" / "aligner.json"))
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    args = parser.parse_args(argv)
    results: dict = {
        "method": "models/data/align.py: PocketSphinx 5.0.3 (en-us acoustic model, cmudict-en-us, 10 ms frames) "
                  "forced alignment (word FSG pass, then state alignment of its best path); out-of-vocabulary "
                  "words from espeak-ng; recognise() = PocketSphinx LM decode then the same alignment. "
                  "Errors are absolute differences of boundary times against hand labels (TIMIT LDC93S1) and "
                  "against flite's exact phone times.",
    }
    t0 = time.perf_counter()
    # one Decoder per process: load it before timing anything
    warm_up()
    results["decoder_load_s"] = round(time.perf_counter() - t0, 3)
    eval_real(results)
    audio_s, compute_s = eval_synthetic(results, args.sentences)
    eval_speed(results, audio_s, compute_s)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("real_reference", "synthetic") if k in results}, indent=1)[:4000])
    print("speed:", {k: v for k, v in results["speed"].items() if k != "real_clips"})
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
