#!/usr/bin/env bash
# One-step set-up for a fresh Debian / Ubuntu / Jetson (JetPack 6) machine.
#   ./setup.sh          system packages + .venv with the daemon (and its MQTT / PLC integrations)
#   ./setup.sh --dev    the same, plus everything the test suite needs
#   ./setup.sh --train  the same as --dev, plus PyTorch (CPU) for python -m training.visual.train / tools/train_acoustic.py
# Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_packages=(python3-venv python3-dev portaudio19-dev ffmpeg sqlite3)
if [ "$mode" = "--dev" ] || [ "$mode" = "--train" ]; then
  # Real components for the tests: PulseAudio null sink, ffmpeg streams, systemd unit checks,
  # headless Chromium for the evaluation report, an MQTT broker, protoc for the Sparkplug schema.
  apt_packages+=(pulseaudio pulseaudio-utils systemd chromium libzmq3-dev gcc mosquitto protobuf-compiler)
fi

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  # --system-site-packages lets JetPack's system TensorRT bindings be seen from the venv.
  "$PY" -m venv --system-site-packages .venv
fi
extras="audio,mqtt,plc"
case "$mode" in
  --dev) extras="audio,mqtt,plc,dev" ;;
  --train) extras="audio,mqtt,plc,dev,train" ;;
esac
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "setup: done (.venv ready with extras: ${extras})"
