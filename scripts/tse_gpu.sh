#!/bin/sh
# The target-talker extractor's GPU recipe: one run of at most 10 minutes on the GPU machine (issue 22).
#
# Prepared here (not run in the session that wrote it: no GPU was lent). Before the run, on this machine:
#   echo /.tse/ >> .git/info/exclude; mkdir -p .tse
#   python -m avcall.models.tse.pack --out /tmp/tse/voices.npz                       # 413 utterances, 284 speakers
#   python -m avcall.models.tse.pack_lips --voices /tmp/tse/voices.npz --out /tmp/tse/voices_lips.npz  # + 93 faces
#   python -m avcall.models.tse.pack --compact-from /tmp/tse/voices_lips.npz --minutes 44 --out .tse/voices_gpu.npz
# then the device tool's run with carry [".tse"] and: sh scripts/tse_gpu.sh
# (one file, under 50 MB: the voices as 8-bit mu-law and the faces' lip embeddings). It trains design 1 (PIT
# separator) for 6 minutes and, where the packed file holds faces, design 2 warm-started
# from it for 2.5 minutes; mixing happens on the GPU from the packed array (no loader); each run checkpoints and
# exports its streaming ONNX into $OUT, which comes back.
set -e
OUT=${OUT:-/tmp/tse_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -m avcall.app.cli train tse --voices .tse/voices_gpu.npz --out "$OUT/sep" --device cuda --batch 64 --seconds 3 \
  --steps 12000 --max-minutes 6 --eval-every 250 --ckpt-every 1000 --val-batch 64 --lr 2e-3 --threads 4 --export \
  2>&1 | tail -n 40
cp "$OUT/sep/train.log" "$OUT/sep_train.log"; cp "$OUT/sep/tse_sep.onnx" "$OUT/"
if python3 -c "import numpy, sys; sys.exit(0 if 'emb' in numpy.load('.tse/voices_gpu.npz').files else 1)"; then
  python3 -m avcall.app.cli train tse --voices .tse/voices_gpu.npz --lips .tse/voices_gpu.npz --design lips \
    --out "$OUT/lips" --init "$OUT/sep/model.pt" --device cuda --batch 64 --seconds 3 --steps 4000 --max-minutes 2.5 \
    --eval-every 250 --ckpt-every 1000 --val-batch 32 --lr 1e-3 --threads 4 --export 2>&1 | tail -n 20
  cp "$OUT/lips/train.log" "$OUT/lips_train.log"; cp "$OUT/lips/tse_lips.onnx" "$OUT/"
fi
rm -rf "$OUT/sep" "$OUT/lips"  # checkpoints stay behind: only the logs and the ONNX files come back
