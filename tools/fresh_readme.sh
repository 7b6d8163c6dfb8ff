# Sourced by tools/fresh_machine.sh: the README's commands, read from it and run in the fresh root.
# Uses fresh_root_command / fresh_root_exec (tools/fresh_root.sh), README (the tested commit's
# README.md), LOGS, and running / wait_gone (tools/fresh_machine.sh).

# The bash code block of a README section ("## TITLE"), comments and blank lines dropped.
readme_block() {
  awk -v title="## $1" '$0 == title {f = 1; next} f && /^## /{exit} f' "$README" \
    | awk '/^```bash/{n++; inside = 1; next} /^```/{inside = 0; next} inside && n == 1' \
    | sed 's/[[:space:]]*#.*$//' | grep .
}

readme_line() {  # SECTION PATTERN: the one command line of that section's code block matching PATTERN
  local found
  found=$(readme_block "$1" | grep -E -- "$2" || true)
  if [ "$(printf '%s' "$found" | grep -c .)" != 1 ]; then
    echo "README, \"$1\": expected one command matching '$2', found: ${found:-none}" >&2
    return 1
  fi
  printf '%s\n' "$found"
}

# The Quick start's `inspect` example on the shipped samples: the defects put in them are found.
readme_inspect() {
  local cmd out
  cmd=$(awk '/^## Quick start/{f = 1; next} f && /^## /{exit} f' "$README" | grep -E '^\.venv/bin/edge-inspector inspect ')
  echo "\$ $cmd"
  out=$(fresh_root_exec "$cmd")
  echo "$out"
  grep -q '"label": "scratch"' <<< "$out"
  grep -q '"label": "bearing"' <<< "$out"
}

# "Running on a line", as an administrator does it, in the root: sudo is installed first (minbase
# has none); the config is edited the way a station without cameras would (synthetic sources);
# `systemctl enable` runs without --now (nothing can start a service in a chroot). Then the
# installed unit's ExecStart runs as the service user with the unit's environment, as systemd
# would start it: it must start inspecting and stop on SIGTERM with exit 0.
readme_line_steps() {
  local section="Running on a line" install check enable
  install=$(readme_line "$section" 'setup\.sh --service')
  check=$(readme_line "$section" 'check-config')
  enable=$(readme_line "$section" 'systemctl enable')
  ROOT_CWD=/ fresh_root_exec "apt-get install -y --no-install-recommends sudo > /dev/null"
  echo "\$ $install"
  ROOT_CWD=/ fresh_root_exec "$install"
  echo "edit /etc/edge-inspector/config.toml: a synthetic camera and microphone instead of the example's devices"
  ROOT_CWD=/ fresh_root_exec "awk '/^\[\[(camera|microphone)\]\]/{exit} {print}' /etc/edge-inspector/config.toml > /tmp/c \
    && printf '%s\n' '[[camera]]' 'name = \"top\"' 'uri = \"synthetic://surface?seed=3&fps=5&defect_rate=0.3\"' \
       '[[microphone]]' 'name = \"gearbox\"' 'uri = \"synthetic://machine?seed=3&fault_rate=0.1\"' >> /tmp/c \
    && cat /tmp/c > /etc/edge-inspector/config.toml"
  echo "\$ $check"
  ROOT_CWD=/ fresh_root_exec "$check"
  echo "\$ ${enable/ --now/}    (in a chroot nothing can start it)"
  ROOT_CWD=/ fresh_root_exec "${enable/ --now/}"
  ROOT_CWD=/ fresh_root_exec "test -L /etc/systemd/system/multi-user.target.wants/edge-inspector.service"
  service_as_systemd_would
}

# The station's HTTP server on the plant network: /metrics refused without the token that
# setup.sh --service wrote, served with it.
SERVICE_ACCESS_CHECK='
import urllib.error, urllib.request
url = "http://127.0.0.1:9108/metrics"
try:
    urllib.request.urlopen(url, timeout=5)
    raise SystemExit("/metrics answered without the token")
except urllib.error.HTTPError as exc:
    assert exc.code == 401, exc.code
token = open("/etc/edge-inspector/http.token").read().strip()
body = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + token}), timeout=5).read()
assert b"edge_inspector_inspected_total" in body, body[:300]
print("HTTP: /metrics 401 without the token, 200 with /etc/edge-inspector/http.token")
'

service_as_systemd_would() {
  local unit=/etc/systemd/system/edge-inspector.service out="$LOGS/4-service-output.log" exec_start pid code=0
  local -a environment=()
  exec_start=$(sed -n 's/^ExecStart=//p' "$ROOT$unit")
  mapfile -t environment < <(sed -n 's/^Environment=//p' "$ROOT$unit")
  echo "as systemd would start it: $exec_start (user edge-inspector; output: $out)"
  ROOT_CWD=/ fresh_root_command "exec sudo -u edge-inspector env ${environment[*]} \
    STATE_DIRECTORY=/var/lib/edge-inspector CACHE_DIRECTORY=/var/cache/edge-inspector $exec_start"
  "${ROOT_CMD[@]}" > "$out" 2>&1 &
  pid=$!
  local until=$((SECONDS + 60))
  until grep -q "edge-inspector running" "$out"; do
    if ! running "$pid" || [ "$SECONDS" -ge "$until" ]; then
      echo "the service did not start; its output:"
      tail -n 30 "$out"
      return 1
    fi
    sleep 1
  done
  sleep 10
  local access=0
  ROOT_CWD=/ fresh_root_exec "/opt/edge-inspector/.venv/bin/python -c $(printf %q "$SERVICE_ACCESS_CHECK")" || access=$?
  kill -TERM "$pid"
  wait_gone "$pid" 30 || { echo "still running 30 s after SIGTERM"; return 1; }
  wait "$pid" || code=$?
  echo "SIGTERM after 10 s of inspecting: exit $code; $(grep -c 'defects=' "$out" || true) status line(s) logged"
  tail -n 5 "$out"
  # (not `[ ] && [ ]`: set -e does not stop on the first test of a list failing)
  [ "$code" = 0 ] || { echo "the service exited with $code on SIGTERM"; return 1; }
  [ "$access" = 0 ] || { echo "the HTTP access check failed"; return 1; }
  ROOT_CWD=/ fresh_root_exec "test \"\$(stat -c %U /var/lib/edge-inspector/journal.sqlite3)\" = edge-inspector"
}
