#!/usr/bin/env bash
# One-step set-up for a fresh Debian / Ubuntu / Jetson (JetPack 6) machine.
#   ./setup.sh            system packages + .venv with the daemon (and its MQTT / PLC integrations)
#   ./setup.sh --dev      the same, plus everything the test suite needs
#   ./setup.sh --train    the same as --dev, plus PyTorch (the CPU build) for the training scripts
#   ./setup.sh --service  the daemon, plus the station's systemd service (tools/install_service.sh:
#                         system user, /etc/edge-inspector, state and cache directories, the unit)
#   ./setup.sh --gige     the daemon, plus Aravis for GigE Vision / USB3 Vision cameras (aravis:// URIs)
# Options combine (./setup.sh --train --service). Idempotent: re-running it only installs what is
# missing. One line per step on the terminal; everything apt and pip print goes to setup.log (its
# tail is shown when a step fails).
set -euo pipefail
cd "$(dirname "$0")"

# ---- What each mode installs: every mode includes the daemon's (base); --train includes --dev. ----
# Add a package to the first mode whose code or tests need it.
# System packages (Debian / Ubuntu names). PyAudio has no Linux wheel on PyPI: pip builds it with
# gcc against the Python and PortAudio headers, so the compiler belongs to every mode.
APT_base=(python3-venv python3-dev gcc libc6-dev portaudio19-dev ffmpeg sqlite3 ca-certificates)
# Real components for the tests: PulseAudio null sink, systemd unit checks, headless Chromium for the
# evaluation report, libzmq headers for the C subscriber, an MQTT broker, protoc for the Sparkplug schema,
# GStreamer's RTSP server (with its Python bindings) as an IP camera, `ss` to see its sockets,
# Aravis' simulated GigE Vision camera (arv-fake-gv-camera-0.8). --dev includes --gige.
APT_dev=(pulseaudio pulseaudio-utils systemd chromium libzmq3-dev mosquitto protobuf-compiler
         python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
         gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly iproute2 aravis-tools)
APT_train=()
APT_service=(systemd)  # systemd-analyze checks the unit
# aravis:// cameras: Aravis through GObject introspection (the daemon needs it only where one is used)
APT_gige=(python3-gi gir1.2-aravis-0.8)
# Python extras from pyproject.toml.
EXTRAS_base=(audio mqtt plc video)
EXTRAS_dev=(dev)
EXTRAS_train=(train)
EXTRAS_service=()
EXTRAS_gige=()

usage() { echo "usage: ./setup.sh [--dev | --train] [--service] [--gige]" >&2; exit 2; }
modes=(base)
has_mode() { [[ " ${modes[*]} " == *" $1 "* ]]; }
add_modes() { local m; for m in "$@"; do has_mode "$m" || modes+=("$m"); done; }
for arg in "$@"; do
  case "$arg" in
    --dev) add_modes dev gige ;;
    --train) add_modes dev gige train ;;
    --service) add_modes service ;;
    --gige) add_modes gige ;;
    *) usage ;;
  esac
done

apt_packages=() extras=()
for m in "${modes[@]}"; do
  declare -n apt_list="APT_$m" extra_list="EXTRAS_$m"
  apt_packages+=("${apt_list[@]}")
  extras+=("${extra_list[@]}")
done
extras_csv=$(IFS=,; echo "${extras[*]}")

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
LOG="$PWD/setup.log"
: > "$LOG"
echo "setup: ${modes[*]}; full output in $LOG"

source tools/steps.sh
STEP_NAME=setup STEP_LOG=$LOG

# ---- system packages ----
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "apt-get update" $SUDO apt-get update
  step "system packages: ${missing[*]}" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages: all ${#apt_packages[@]} present"
fi

# ---- the virtual environment ----
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  # --system-site-packages lets JetPack's system TensorRT bindings be seen from the venv.
  step ".venv ($("$PY" --version 2>&1))" "$PY" -m venv --system-site-packages .venv
fi
PIP=(.venv/bin/python -m pip)
step "pip itself" "${PIP[@]}" install --upgrade pip

# ---- PyTorch (--train): the CPU build ----
pip_extra=()
if has_mode train; then
  source tools/setup_torch.sh
  choose_torch  # sets torch_spec, torch_choice, torch_needed and pip_extra (an index for the CPU build)
  if [ "$torch_needed" = 1 ]; then
    step "PyTorch: $torch_choice" "${PIP[@]}" install "${pip_extra[@]}" "$torch_spec"
  else
    echo "setup: PyTorch: $torch_choice"
  fi
fi

step "edge-inspector with extras ${extras_csv}" "${PIP[@]}" install "${pip_extra[@]}" -e ".[${extras_csv}]"

# python3-gi (GObject introspection: Aravis for aravis:// cameras, GStreamer's RTSP server for the
# test camera) is a Debian package: the venv sees it through --system-site-packages when it was
# made from Debian's python3. A venv made from another build of the same Python version gets the
# package linked in instead. The typelibs (gir1.2-*) are found by gi itself.
if has_mode gige; then
  if ! .venv/bin/python -c "import gi" 2>/dev/null && [ -d /usr/lib/python3/dist-packages/gi ]; then
    venv_ver=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    sys_ver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    if [ "$venv_ver" = "$sys_ver" ]; then
      mkdir -p .venv/system-gi
      ln -sfn /usr/lib/python3/dist-packages/gi .venv/system-gi/gi
      site=$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
      echo "$PWD/.venv/system-gi" > "$site/system-gi.pth"
      echo "setup: linked Debian's python3-gi into .venv"
    else
      echo "setup: python3-gi is for Python $sys_ver, the venv runs $venv_ver: no aravis:// cameras, RTSP tests skipped"
    fi
  fi
fi

# promtool checks the daemon's /metrics in the tests: the binary only, out of Debian's prometheus
# package (which would also install and start a Prometheus server).
if has_mode dev && [ ! -x .venv/bin/promtool ]; then
  if command -v promtool >/dev/null; then
    ln -sf "$(command -v promtool)" .venv/bin/promtool
  else
    step "promtool (the binary alone, from Debian's prometheus package)" env SUDO="$SUDO" tools/fetch_promtool.sh .venv/bin
  fi
fi

if has_mode service; then
  step "the systemd service (tools/install_service.sh)" $SUDO tools/install_service.sh
  sed -n 's/^service: /  /p' "$LOG"
fi

echo "setup: done in $SECONDS s (.venv ready with extras: ${extras_csv}). Next:"
if has_mode service; then
  here=$PWD
  echo "  sudoedit /etc/edge-inspector/config.toml     # your cameras and microphones, then check it as the service will:"
  echo "  sudo -u edge-inspector $here/.venv/bin/edge-inspector check-config /etc/edge-inspector/config.toml"
  echo "  sudo systemctl enable --now edge-inspector"
elif has_mode dev; then
  echo "  .venv/bin/python -m pytest -q          # the test suite"
fi
if ! has_mode service; then
  echo "  .venv/bin/edge-inspector run           # the demo daemon (Ctrl-C stops it)"
  echo "  .venv/bin/edge-inspector tail          # in a second terminal: its events"
fi
