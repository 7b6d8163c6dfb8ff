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
  # headless Chromium for the evaluation report, an MQTT broker, protoc for the Sparkplug schema,
  # GStreamer's RTSP server as an IP camera.
  apt_packages+=(pulseaudio pulseaudio-utils systemd chromium libzmq3-dev gcc mosquitto protobuf-compiler
                 python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
                 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)
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

# python3-gi (GStreamer's Python bindings, for the RTSP test camera) is a Debian package: the
# venv sees it through --system-site-packages when it was made from Debian's python3. A venv
# made from another build of the same Python version gets the package linked in instead.
if [ "$mode" = "--dev" ] || [ "$mode" = "--train" ]; then
  if ! .venv/bin/python -c "import gi" 2>/dev/null && [ -d /usr/lib/python3/dist-packages/gi ]; then
    venv_ver=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    sys_ver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    if [ "$venv_ver" = "$sys_ver" ]; then
      mkdir -p .venv/system-gi
      ln -sfn /usr/lib/python3/dist-packages/gi .venv/system-gi/gi
      site=$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
      echo "$PWD/.venv/system-gi" > "$site/system-gi.pth"
    else
      echo "setup: python3-gi is for Python $sys_ver, the venv runs $venv_ver: RTSP tests will be skipped"
    fi
  fi
fi
echo "setup: done (.venv ready with extras: ${extras})"
