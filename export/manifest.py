"""What every model family's export shares: the shipped weights' manifest (models/weights/manifest.json: one entry
per ONNX file with its sha256, size, recipe, corpus, metrics and credits), the opset the families export at,
and the credits owed when a corpus holds real voices. The exports themselves live beside their models
(see avcall.export)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from avcall.pipelines.runtime import weights_path

OPSET = 17
# added when the training corpus holds real voices from speech_train/
REAL_VOICE_CREDITS = ["LibriSpeech (Panayotov et al. 2015, from LibriVox recordings), CC BY 4.0: real voices of "
                      "the training corpus", "LJSpeech (Keith Ito, 2017), public domain: real voices of the training corpus"]


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corpus_info(corpus: str | Path | None) -> dict:
    """What a corpus made by `avcall corpus make` says of itself (seed, size), for the manifest."""
    info: dict = {"path": str(corpus) if corpus else None}
    summary = Path(corpus) / "corpus.json" if corpus else None
    if summary is not None and summary.is_file():
        d = json.loads(summary.read_text())
        info.update({k: d.get(k) for k in ("version", "seed", "examples", "seconds", "minutes_asked", "real_voices",
                                           "recipe")})
        info["command"] = f"avcall corpus make --minutes {d.get('minutes_asked')} --seed {d.get('seed')}"
    elif corpus and (Path(corpus) / "examples").is_dir():  # a copy taken while `corpus make` ran: what it held
        import soundfile as sf

        flacs = sorted((Path(corpus) / "examples").glob("*.flac"))
        info.update({"examples": len(flacs), "seconds": round(sum(sf.info(f).duration for f in flacs), 1),
                     "command": "avcall corpus make, its first examples (copied while it ran)"})
    return info


def write_manifest_entry(onnx_path: str | Path, *, recipe: str, corpus: dict, metrics: dict,
                         credits: list[str], latency_ms: float, manifest: str | Path | None = None,
                         extra: dict | None = None) -> dict:
    """Add or replace the entry of `onnx_path` (keyed by file name) in `manifest` (default: the shipped
    models/weights/manifest.json); returns the entry. The file is rewritten whole (temp file, rename)."""
    onnx_path = Path(onnx_path)
    manifest = Path(manifest) if manifest is not None else weights_path("manifest.json")
    data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    data.setdefault("format", 1)
    models = data.setdefault("models", {})
    entry = {"file": onnx_path.name, "sha256": sha256(onnx_path), "bytes": onnx_path.stat().st_size,
             "recipe": recipe, "corpus": corpus, "latency_ms": latency_ms, "metrics": metrics,
             "credits": list(credits), "opset": OPSET,
             "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}
    entry.update(extra or {})
    models[onnx_path.name] = entry
    data["total_bytes"] = sum(m.get("bytes", 0) for m in models.values())
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, manifest)
    return entry
