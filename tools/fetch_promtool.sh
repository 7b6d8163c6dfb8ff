#!/usr/bin/env bash
# Puts Debian's promtool (Prometheus's metrics linter, for the /metrics test) into DIR.
# Debian ships promtool only inside the prometheus server package (19 MB download, which would
# also install a Prometheus server with its user and service); the binary alone is taken out.
#   tools/fetch_promtool.sh .venv/bin
set -euo pipefail
dest=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's download sandbox user must be able to write there
cd "$work"
if ! apt-get download prometheus; then
  ${SUDO:-} apt-get update
  apt-get download prometheus
fi
dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
install -m 0755 usr/bin/promtool "$dest/promtool"
"$dest/promtool" --version | head -n 1
