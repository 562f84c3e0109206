"""`avcall eval`: the sub-parsers of every evaluation (enhance, captions, talking-face, emotion, sync) and the
dispatch to them; the one module that imports them all."""

from __future__ import annotations


from avcall.pipelines.errors import InputError

from . import captions, emotion, enhance, sync, talking_face


def add_parser(commands) -> None:
    e = commands.add_parser("eval", help="evaluate models on the real recordings of ../shared/data",
                            description="Evaluations on real recordings, written as JSON.")
    sub = e.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    s = sub.add_parser("enhance", help="speech enhancement: SI-SDR(i), PESQ-wb, STOI, real-time factor",
                       description="Mix each talking-face clip's own audio with a competing talker at 0 dB and "
                       "a real noise at 0 and 5 dB (fixed seed), take the real noisy/clean pairs, run each "
                       "method and score it against the clean audio. Writes OUT (per-example rows and a "
                       "summary keyed [condition][method]) and spectrogram plots in <OUT stem>_plots/ beside "
                       "it; prints a table.")
    enhance.add_arguments(s)

    c = sub.add_parser("captions", help="live captions: word error rate and latency, raw and enhanced",
                       description="Caption every clip with a transcript (speech/, talking_faces/ GRID and "
                       "LRS2) clean, with real noise at 5 and 0 dB, with a competing talker at 0 dB and in turns "
                       "(the user talks and listens), as the recogniser hears it: raw, after the noise suppressor, "
                       "through the lip gate (--inputs), through the live Captioner. Writes OUT (per-clip rows and "
                       "a summary keyed [engine][condition][input]: wer, latencies, other_words_per_min, CPU); "
                       "prints a table.")
    captions.add_arguments(c)

    t = sub.add_parser("talking-face", help="the avatar's mouth against the real speaker's, judged for sync",
                       description="Drive the avatar with each talking-face clip's own audio and compare its mouth "
                       "with what the real speaker's lips did (tracker on the real video); the sync judge on both. "
                       "Methods avcall-voice, phoneme-oracle, static. Writes OUT (summary keyed by method, the "
                       "judge's own accuracy under 'judge', rows).")
    talking_face.add_arguments(t)

    m = sub.add_parser("emotion", help="emotion: face, voice and the fusion methods, UAR per condition",
                       description="Score the shipped face and voice emotion nets and every fusion method (concat, "
                       "avef, tfn, late) on a labelled split: clean, voice with noise at 5 dB, face missing, voice "
                       "missing. Faces and voices are from different people, paired by label. Writes OUT (summary "
                       "keyed [condition][method]: accuracy, uar, macro_f1) and confusion matrices as PNG beside it.")
    emotion.add_arguments(m)

    j = sub.add_parser("sync", help="the sync judge: offsets found on real talking faces shifted by known amounts",
                       description="Move each talking-face clip's audio by 0, +-2, +-5 and +-10 video frames and "
                       "let the sync judge find the offset; writes OUT with the share within one frame of the "
                       "truth (and of the truth plus the clip's own offset), the same for the GRID and LRS2 clips, "
                       "and the rows.")
    sync.add_arguments(j)

def cmd_eval(args) -> int:
    if args.eval_command == "emotion":
        return emotion.run(args)
    if args.eval_command == "captions":
        return captions.run(args)
    if args.eval_command == "talking-face":
        return talking_face.run(args)
    if args.eval_command == "sync":
        return sync.run(args)
    if args.eval_command != "enhance":
        raise InputError(f"unknown evaluation {args.eval_command}")
    return enhance.run(args)
