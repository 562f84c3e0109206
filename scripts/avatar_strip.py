"""The README's strip of the talking face: the bundled portrait saying the demo line, moved by its voice alone
through the shipped voice-to-lips net (no transcript, no phones), a frame at the middle of a few sounds of
the line, each labelled with its word and sound (the phones come from the text-to-speech engine, for the
labels only), the mouth enlarged below each face. Needs flite.

    python scripts/avatar_strip.py -o docs/img/avatar.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from avcall.models.data.portrait import DEMO_LINE, speak, voice
from avcall.pipelines.face.render import PortraitRenderer
from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

# (phone, word): shut and open mouths in the order the line says them
PICKS = (("ae", "can"), ("m", "me"), ("aw", "now"), ("sil", "(pause)"), ("ay", "I"), ("v", "video"),
         ("ow", "video"), ("aa", "started"))

MOUTH = np.s_[130:200, 80:176]  # the bundled portrait's mouth in its 256 px frame


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=Path, default=Path("docs/img/avatar.jpg"))
    args = p.parse_args()
    tts_voice = voice("flite:slt")
    if tts_voice is None:
        raise SystemExit("flite is not installed (scripts/setup.sh)")
    audio, timing = speak(tts_voice, [DEMO_LINE])
    audio = 0.5 * audio / max(float(np.abs(audio).max()), 1e-6)
    lips = VoiceToLipsStream().clip(audio).lips
    renderer = PortraitRenderer()
    tiles, after = [], 0.0
    for phone, word in PICKS:
        hit = next(x for x in timing.phones if x.phone == phone and x.start >= after)
        after = hit.end
        frame = min(int(round(0.5 * (hit.start + hit.end) * 25)), len(lips) - 1)
        image = renderer.render(lips[frame], frame / 25.0)
        face = cv2.resize(image, (154, 154), interpolation=cv2.INTER_AREA)
        mouth = cv2.resize(image[MOUTH], (154, 112), interpolation=cv2.INTER_CUBIC)
        tile = np.vstack([face, mouth])
        label = word if phone == "sil" else f"{word} /{phone}/"
        cv2.putText(tile, label, (5, 146), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.hstack(tiles), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
