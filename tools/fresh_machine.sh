#!/usr/bin/env bash
# The README on a fresh machine, as a new user meets it. In a minimal Debian root (debootstrap
# minbase + git, python3, python3-venv, ca-certificates; see tools/fresh_root.sh) with a clone of
# the committed tree at /opt/edge-inspector, it runs the README's Quick start commands verbatim:
#   1. the first (set up, run the demo daemon), in a session of its own like a terminal's job;
#      ~30 s after the daemon started it gets Ctrl-C (SIGINT to its process group). The README's
#      `tail --json --topic defect.`, started meanwhile as a background job, must have received a
#      defect event and stop on SIGINT with exit 0; the command must exit 0.
#      Then its `inspect` example must find the defects of the samples in examples/.
#   2. the second (set up everything, the whole test suite), with PYTEST_ADDOPTS=-rs so skips give
#      their reasons: it must pass, and no test may be skipped except for hardware this machine
#      lacks ($ALLOWED_SKIPS), since a skip for a missing tool is a missing install step.
#   3. "Running on a line" (tools/fresh_readme.sh): `sudo ./setup.sh --service`, check-config as the
#      service user, `systemctl enable`, and the installed unit's ExecStart run as systemd would.
# One line per step on the terminal with the time it took and the time since the start; each step's
# full output in a log file under --logs; the end of the failing log when a step fails.
#
# usage: tools/fresh_machine.sh [--ref REF] [--logs DIR] [--cache DIR] [--budget S] [--keep-root]
#   --ref REF     the commit to clone (default HEAD: the committed tree, not the working tree)
#   --logs DIR    where the logs go (default: fresh-machine-logs/ in this checkout)
#   --cache DIR   downloads kept between runs (default /var/cache/edge-inspector-fresh-machine)
#   --budget S    the whole check ends within S seconds: the suite is stopped in time for the
#                 steps after it and the clean-up, and the failure says so (default: no limit)
#   --keep-root   leave the root in place afterwards (unmounted) to look into
# Needs root, debootstrap (installed from Debian when missing), mount and chroot; exit 0 when every
# check passed, 1 when one failed, 2 on a usage error.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/tools/steps.sh"
source "$REPO/tools/fresh_root.sh"
source "$REPO/tools/fresh_readme.sh"

REF=HEAD KEEP=0
LOGS="$REPO/fresh-machine-logs"
CACHE="${FRESH_MACHINE_CACHE:-/var/cache/edge-inspector-fresh-machine}"
SUITE=bookworm
MIRROR="${FRESH_MACHINE_MIRROR:-http://deb.debian.org/debian}"
ROOT_INCLUDE=git,python3,python3-venv,ca-certificates
DEMO_S=30               # how long the demo runs before Ctrl-C
SETUP_TIMEOUT_S=900     # the first command's setup.sh, until the daemon starts
SUITE_TIMEOUT_S=1500    # the second command, setup.sh --train and the whole suite
BUDGET_S=""             # --budget
AFTER_SUITE_S=180       # kept from the budget for the steps after the suite and the clean-up
# Skip reasons allowed in the fresh root: hardware it lacks, and what root may do anyway.
ALLOWED_SKIPS='TensorRT|CUDA|cuda-python|NVIDIA|GPU|root can'

usage() { sed -n 's/^# \{0,1\}//; /^usage:/,/^Needs/p' "$0" | sed '$d' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --ref) REF=${2:?}; shift 2 ;;
    --logs) LOGS=${2:?}; shift 2 ;;
    --cache) CACHE=${2:?}; shift 2 ;;
    --budget) BUDGET_S=${2:?}; shift 2 ;;
    --keep-root) KEEP=1; shift ;;
    *) usage ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then echo "fresh-machine: needs root (debootstrap, mount, chroot)" >&2; exit 2; fi
SHA=$(git -C "$REPO" rev-parse --verify "$REF^{commit}")
GIT_DIR_HOST=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir)

mkdir -p "$LOGS" "$CACHE"
LOGS=$(cd "$LOGS" && pwd)
rm -f "$LOGS"/[0-9]-*
exec 9> "$CACHE/.lock"  # one run at a time per cache (apt's archive lock)
if ! flock -n 9; then echo "fresh-machine: waiting for another run that uses $CACHE"; flock -w 1800 9; fi

WORK=$(mktemp -d /var/tmp/edge-inspector-fresh.XXXXXX)
ROOT=$WORK/root
cleanup() {
  local code=$?
  set +e
  fresh_root_cleanup
  if ! fresh_root_unmounted; then
    echo "fresh-machine: could not unmount everything under $ROOT; left $WORK in place" >&2
  elif [ "$KEEP" = 1 ]; then
    echo "fresh-machine: the root stays in $ROOT (unmounted)"
  else
    rm -rf --one-file-system "$WORK"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

README=$WORK/README.md  # the commands are the tested commit's, as written there
git -C "$REPO" show "$SHA:README.md" > "$README"
mapfile -t README_COMMANDS < <(readme_block "Quick start")
CMD1=${README_COMMANDS[0]:?no command in the README\'s Quick start}
CMD2=${README_COMMANDS[1]:?no second command in the README\'s Quick start}
CMD_TAIL=$(awk '/^## Quick start/{f = 1; next} f && /^## /{exit} f' "$README" \
  | grep -o '^\.venv/bin/edge-inspector tail --json[^#]*' | sed 's/[[:space:]]*$//')
[ -n "$CMD_TAIL" ] || { echo "fresh-machine: no 'edge-inspector tail --json' line in the README's Quick start" >&2; exit 1; }

need_debootstrap() {
  if command -v debootstrap; then return; fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
}

prepare_root() {
  fresh_root_mount_system
  fresh_root_configure
}

clone_into_root() {
  mkdir -p "$ROOT/mnt/source.git"
  mount --bind "$GIT_DIR_HOST" "$ROOT/mnt/source.git"
  mount -o remount,bind,ro "$ROOT/mnt/source.git"
  ROOT_CWD=/ fresh_root_exec "git clone --quiet file:///mnt/source.git /opt/edge-inspector \
    && git -C /opt/edge-inspector checkout --quiet --detach $SHA && git -C /opt/edge-inspector log -1 --oneline"
  umount "$ROOT/mnt/source.git"
}

running() { kill -0 "$1" 2>/dev/null; }

wait_gone() {  # PID SECONDS: true when the process ended within that time
  local until=$((SECONDS + $2))
  while running "$1"; do
    if [ "$SECONDS" -ge "$until" ]; then return 1; fi
    sleep 0.5
  done
}

# The demo's fixed ports, held (tools/demo_ports.py: a lock that a suite on this machine also
# takes, since the root shares its network) for a step that serves on them, once they are free.
with_demo_ports() {  # COMMAND...: run it in this step holding the ports
  local held="$LOGS/.demo-ports"
  python3 "$REPO/tools/demo_ports.py" --hold > "$held" 2>&1 &
  DEMO_PORTS_PID=$!
  trap 'kill -TERM "$DEMO_PORTS_PID" 2>/dev/null; wait "$DEMO_PORTS_PID" 2>/dev/null || true' EXIT
  until grep -qx held "$held"; do
    running "$DEMO_PORTS_PID" || { cat "$held"; return 1; }
    sleep 0.5
  done
  "$@"
}

first_command() {
  local out="$LOGS/2-first-command-output.log" events="$LOGS/2-tail.jsonl"
  local leader daemon="" tail_pid code=0 until=$((SECONDS + SETUP_TIMEOUT_S))
  echo "\$ $CMD1    (output: $out)"
  fresh_root_command "$CMD1"
  setsid "${ROOT_CMD[@]}" > "$out" 2>&1 &
  leader=$!
  while [ -z "$daemon" ]; do
    sleep 2
    daemon=$(pgrep -s "$leader" -f '^[^ ]*python[^ ]* [^ ]*/edge-inspector run' | head -n 1 || true)
    if [ -z "$daemon" ] && ! running "$leader"; then
      wait "$leader" || code=$?
      echo "the command ended (exit $code) before the daemon started; the end of its output:"
      tail -n 40 "$out"
      return 1
    fi
    if [ -z "$daemon" ] && [ "$SECONDS" -ge "$until" ]; then
      echo "no daemon ${SETUP_TIMEOUT_S} s after the start; the end of the output:"
      tail -n 40 "$out"
      return 1
    fi
  done
  echo "the daemon runs (pid $daemon); in the background: \$ $CMD_TAIL    (output: $events)"
  fresh_root_command "exec $CMD_TAIL"
  "${ROOT_CMD[@]}" > "$events" 2> "$LOGS/2-tail.err" &
  tail_pid=$!
  sleep "$DEMO_S"
  if ! running "$leader"; then
    echo "the daemon stopped by itself; the end of its output:"
    tail -n 40 "$out"
    return 1
  fi
  echo "Ctrl-C after ${DEMO_S} s: SIGINT to the command's process group"
  kill -INT -- "-$leader"
  if ! wait_gone "$leader" 30; then
    echo "still running 30 s after SIGINT; the end of its output:"
    tail -n 40 "$out"
    return 1
  fi
  wait "$leader" || code=$?
  echo "the command exited with $code"
  kill -INT "$tail_pid"  # tail is a background job: it inherited SIGINT ignored
  if ! wait_gone "$tail_pid" 15; then
    echo "tail did not stop on SIGINT within 15 s"
    return 1
  fi
  local tail_code=0
  wait "$tail_pid" || tail_code=$?
  local visual acoustic
  visual=$(grep -c '"topic":"defect\.visual\.' "$events" || true)
  acoustic=$(grep -c '"topic":"defect\.acoustic\.' "$events" || true)
  echo "tail exited with $tail_code after receiving $visual visual and $acoustic acoustic defect events"
  if [ "$code" != 0 ]; then tail -n 40 "$out"; return 1; fi
  if [ "$tail_code" != 0 ]; then cat "$LOGS/2-tail.err"; return 1; fi
  [ $((visual + acoustic)) -gt 0 ]
}

second_command() {
  echo "\$ $CMD2"
  ROOT_ENV=(PYTEST_ADDOPTS=-rs)
  fresh_root_command "$CMD2"
  local limit=$SUITE_TIMEOUT_S why="the suite's own limit" code=0
  if [ -n "$BUDGET_S" ] && [ $((BUDGET_S - AFTER_SUITE_S - SECONDS)) -lt "$limit" ]; then
    limit=$((BUDGET_S - AFTER_SUITE_S - SECONDS)) why="what --budget $BUDGET_S left for it"
  fi
  if [ "$limit" -le 0 ]; then echo "no time left for it within --budget $BUDGET_S"; return 1; fi
  timeout -k 30 "$limit" "${ROOT_CMD[@]}" || code=$?
  if [ "$code" = 124 ] || [ "$code" = 137 ]; then
    echo "stopped after $limit s ($why): the suite did not finish in time"
  fi
  return "$code"
}

check_skips() {
  local log="$LOGS/3-second-command.log" unexpected
  grep -E '^[0-9]+ (passed|failed)' "$log" | tail -n 1
  unexpected=$(grep -E '^SKIPPED \[' "$log" | grep -Ev "$ALLOWED_SKIPS" || true)
  if [ -n "$unexpected" ]; then
    echo "tests skipped in the fresh root (a tool or package setup.sh did not install?):"
    echo "$unexpected"
    return 1
  fi
  echo "skips: $(grep -cE '^SKIPPED \[' "$log" || true) line(s), all for hardware this machine lacks"
}

STEP_NAME=fresh-machine STEP_CLOCK=1
echo "fresh-machine: $(git -C "$REPO" log -1 --format='%h %s' "$SHA")"
echo "fresh-machine: root in $ROOT, downloads cached in $CACHE, logs in $LOGS"
STEP_LOG="$LOGS/1-root.log"
step "debootstrap on this host" need_debootstrap
step "Debian $SUITE minbase + $ROOT_INCLUDE" fresh_root_build
step "/proc, /sys, /dev, /run; this host's apt and pip configuration" prepare_root
step "clone ${SHA:0:12} into /opt/edge-inspector" clone_into_root
STEP_LOG="$LOGS/2-first-command.log"
step "README command 1 (demo stopped after ${DEMO_S} s; tail got defects): $CMD1" with_demo_ports first_command
step "README inspect example on examples/" readme_inspect
# The line steps do not need the suite to pass: they run, and say what they find, either way.
STEP_KEEP_GOING=1
STEP_LOG="$LOGS/3-second-command.log"
step "README command 2: $CMD2" second_command
step "no test skipped for want of an install step" check_skips
STEP_LOG="$LOGS/4-running-on-a-line.log"
step "README Running on a line: setup.sh --service, check-config and the unit's ExecStart as its user" \
  with_demo_ports readme_line_steps
if [ "${#STEP_FAILED[@]}" -gt 0 ]; then
  echo "fresh-machine: [$(step_elapsed)] FAILED: $(printf '%s; ' "${STEP_FAILED[@]}" | sed 's/; $//')" >&2
  exit 1
fi
echo "fresh-machine: [$(step_elapsed)] passed: the README's commands work on a fresh $SUITE"
