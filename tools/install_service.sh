#!/usr/bin/env bash
# Run by `./setup.sh --service` (as root): this checkout as the station's systemd service.
#   - the system user `edge-inspector` (groups video and audio, for cameras and microphones);
#   - /etc/edge-inspector/config.toml from configs/line.example.toml, with this checkout's engines
#     directory (an existing config is kept as it is), and /etc/edge-inspector/http.token, a new
#     random access token for the HTTP server (an existing one is kept);
#   - /var/lib/edge-inspector (journal) and /var/cache/edge-inspector/plans (TensorRT plans), owned
#     by that user, so commands run as it (check-config, build-engines) see what the service sees;
#   - /etc/systemd/system/edge-inspector.service from systemd/, pointing at this checkout's .venv,
#     checked with `systemd-analyze verify`; systemd reloads it when it is running.
# Idempotent. It does not enable or start the service: the config needs your cameras first.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
USER_NAME=edge-inspector
ETC=/etc/edge-inspector
UNIT=/etc/systemd/system/edge-inspector.service
STATE=/var/lib/edge-inspector
CACHE=/var/cache/edge-inspector

fail() { echo "service: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (sudo ./setup.sh --service)"
[ -x "$CHECKOUT/.venv/bin/edge-inspector" ] || fail "$CHECKOUT/.venv/bin/edge-inspector is missing: run ./setup.sh first"
case "$CHECKOUT/" in
  /root/* | /home/* | /run/user/*)
    fail "the service cannot use a checkout in $CHECKOUT: the unit hides home directories (ProtectHome=yes) and" \
         "$USER_NAME may not read them. Put the repository at /opt/edge-inspector (git clone … /opt/edge-inspector)" ;;
esac
# every directory down to the checkout must be open to the service user
dir=$CHECKOUT
while [ "$dir" != / ]; do
  [ "$(( 0$(stat -c %a "$dir") & 01 ))" -ne 0 ] || fail "$dir is not searchable by other users (mode $(stat -c %a "$dir")): $USER_NAME could not reach the checkout"
  dir=$(dirname "$dir")
done

if ! getent passwd "$USER_NAME" > /dev/null; then
  useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
    --comment "edge-inspector daemon" "$USER_NAME"
  echo "service: created the system user $USER_NAME"
fi
for group in video audio; do
  if getent group "$group" > /dev/null && ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$group"; then
    usermod -aG "$group" "$USER_NAME"
  fi
done
echo "service: $USER_NAME is in groups: $(id -nG "$USER_NAME")"

install -d -m 0755 "$ETC"
if [ -e "$ETC/config.toml" ]; then
  echo "service: kept $ETC/config.toml"
else
  sed "s#/opt/edge-inspector/#$CHECKOUT/#g" configs/line.example.toml > "$ETC/config.toml.new"
  install -m 0640 -o root -g "$USER_NAME" "$ETC/config.toml.new" "$ETC/config.toml"
  rm -f "$ETC/config.toml.new"
  echo "service: wrote $ETC/config.toml (the example line: edit its cameras and microphones)"
fi
# The example serves the plant network (health.listen 0.0.0.0): its pages and /metrics need a token.
if [ -e "$ETC/http.token" ]; then
  echo "service: kept $ETC/http.token"
else
  (umask 077; "$CHECKOUT/.venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))' > "$ETC/http.token.new")
  install -m 0640 -o root -g "$USER_NAME" "$ETC/http.token.new" "$ETC/http.token"
  rm -f "$ETC/http.token.new"
  echo "service: wrote $ETC/http.token (the access token for the status page and /metrics from other hosts)"
fi
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE" "$CACHE" "$CACHE/plans"
echo "service: $STATE and $CACHE/plans belong to $USER_NAME"

install -d -m 0755 "$(dirname "$UNIT")"
sed "s#/opt/edge-inspector/#$CHECKOUT/#g" systemd/edge-inspector.service > "$UNIT.new"
chmod 0644 "$UNIT.new"
mv "$UNIT.new" "$UNIT"
if ! command -v systemd-analyze > /dev/null; then
  fail "systemd-analyze is missing (the systemd package): cannot check $UNIT"
fi
if ! problems=$(systemd-analyze verify "$UNIT" 2>&1) || grep -q "$UNIT" <<< "$problems"; then
  echo "$problems" >&2
  fail "systemd-analyze verify $UNIT reports problems"
fi
echo "service: installed $UNIT (ExecStart $CHECKOUT/.venv/bin/edge-inspector; systemd-analyze verify: ok)"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "service: systemd reloaded its units"
fi
