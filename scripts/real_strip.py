"""The README's strip of the talking face from a real clip's voice: the top row the real speaker (a GRID
clip of `../shared/data/talking_faces`, the Zenodo release's CC BY 4.0), the bottom row the bundled portrait
moved by that clip's voice alone through the shipped voice-to-lips net (and, with --also, a third row by
another net), at the same moments: the real mouth's widest openings and closures, in time order, mouths enlarged.

    python scripts/real_strip.py -o docs/img/avatar_real.jpg [--also other/talking_face.onnx]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from avcall.models.data.measure import clip_signals
from avcall.pipelines.face.render import PortraitRenderer
from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "talking_faces" / "GRID_lbax4n.mpg"
TILE = (160, 120)  # width, height of each mouth tile


def mouth_crop(image: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    x, y = np.round(centre).astype(int)
    pad = cv2.copyMakeBorder(image, half, half, half, half, cv2.BORDER_REPLICATE)
    h = int(0.75 * half)  # the tile's aspect; the centre sits at (x + half, y + half) in the padded image
    crop = pad[y + half - h:y + half + h, x:x + 2 * half]
    return cv2.resize(crop, TILE, interpolation=cv2.INTER_CUBIC)


def main() -> None:
    from avcall.pipelines.frames import VideoFrame
    from avcall.pipelines.stages.face_tracker import FaceTracker
    from avcall.pipelines.face.mesh import LIP_INDICES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("-o", "--out", type=Path, default=Path("docs/img/avatar_real.jpg"))
    p.add_argument("-n", type=int, default=7, help="moments shown")
    p.add_argument("--also", type=Path, metavar="ONNX", help="another voice-to-lips net, drawn in a third row")
    args = p.parse_args()
    real, audio = clip_signals(args.clip)
    with av.open(str(args.clip)) as c:
        video = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    n = min(len(video), len(real.lips))
    nets = [VoiceToLipsStream()] + ([VoiceToLipsStream(args.also)] if args.also else [])
    tracks = [net.clip(audio, frames=n).lips for net in nets]
    renderer = PortraitRenderer()
    opening = np.where(real.face_present[:n], real.opening[:n], np.nan)
    # moments: alternate the widest opening and the closest closure in n equal stretches of the speech
    voiced = np.flatnonzero(np.nan_to_num(opening) > np.nanpercentile(opening, 40))
    lo, hi = (voiced[0], voiced[-1]) if len(voiced) else (0, n - 1)
    edges = np.linspace(lo, hi + 1, args.n + 1).astype(int)
    picks = [int(a + (np.nanargmax if k % 2 == 0 else np.nanargmin)(opening[a:b]))
             for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    tracker = FaceTracker(max_faces=1)
    tracker.open()
    try:
        top, rows = [], [[] for _ in tracks]
        for i in picks:
            obs = tracker.observe(VideoFrame(pts=i / 25, image=video[i], index=i))
            pts = obs.landmarks[LIP_INDICES, :2] if obs.present else np.array([[video[i].shape[1] / 2] * 2])
            iod = float(np.hypot(*(obs.landmarks[473, :2] - obs.landmarks[468, :2]))) if obs.present else 60.0
            top.append(mouth_crop(video[i], pts.mean(0), int(0.9 * iod)))
            for row, lips in zip(rows, tracks):
                image = renderer.render(lips[i], i / 25)
                row.append(mouth_crop(image, renderer.lip_pixels(lips[i]).mean(0), int(0.9 * renderer.iod)))
            cv2.putText(top[-1], f"{i / 25:.2f} s", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
    finally:
        tracker.close()
    strip = np.vstack([np.hstack(top)] + [np.hstack(row) for row in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), strip, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(args.out, strip.shape)


if __name__ == "__main__":
    main()
