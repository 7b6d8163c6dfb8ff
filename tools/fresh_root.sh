# Sourced by tools/fresh_machine.sh: a minimal Debian root to try the README in, as a new user would.
#
# The root is what `debootstrap --variant=minbase` makes, plus git, python3, python3-venv and
# ca-certificates: nothing the project installs is there before setup.sh puts it there. Only
# downloads are cached between runs (debootstrap's package tarball, apt's .deb files, pip's HTTP
# cache); every package is still installed inside the root, and pip's cache of wheels it built
# (PyAudio) is not kept, so a missing compiler or header still fails.
#
# Needs root, mount and chroot (CI runs it as root in a container where mount works).
# Expects: ROOT (the root's path, created here), ROOT_INCLUDE (packages added to minbase),
# CACHE (the download cache), SUITE and MIRROR (for debootstrap).

_root_mount() {  # mount ARGS... TARGET (created if missing)
  mkdir -p "${*: -1}"
  mount "$@"
}

_root_mount_points() {  # every mount point at or under ROOT, latest first (the order to unmount them in)
  awk -v root="$ROOT" '$2 == root || index($2, root "/") == 1 {p[++n] = $2} END {for (i = n; i >= 1; i--) print p[i]}' \
    /proc/self/mounts
}

# debootstrap from the cached package tarball (made on the first run, remade after 30 days).
fresh_root_build() {
  local arch tarball
  arch=$(dpkg --print-architecture)
  tarball="$CACHE/debootstrap-$SUITE-minbase-$arch-$(echo "$ROOT_INCLUDE" | md5sum | cut -c1-8).tgz"
  mkdir -p "$CACHE"
  if [ -n "$(find "$tarball" -mtime +30 2>/dev/null)" ]; then rm -f "$tarball"; fi
  if [ ! -s "$tarball" ]; then
    debootstrap --variant=minbase --include="$ROOT_INCLUDE" --make-tarball="$tarball.tmp" \
      "$SUITE" "$ROOT.download" "$MIRROR"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$ROOT.download"
  fi
  debootstrap --variant=minbase --include="$ROOT_INCLUDE" --unpack-tarball="$tarball" "$SUITE" "$ROOT" "$MIRROR"
}

# The host's apt sources and network settings, and pip's configuration with the folders it names
# (read-only): a machine on the same network as this one.
fresh_root_configure() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp /etc/hosts "$ROOT/etc/hosts"
  # certificate authorities this host added (a TLS-inspecting proxy's, a plant's own)
  if compgen -G '/usr/local/share/ca-certificates/*.crt' > /dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates
  fi
  rm -f "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/*
  [ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$ROOT/etc/apt/"
  find /etc/apt/sources.list.d -maxdepth 1 \( -name '*.list' -o -name '*.sources' \) \
    -exec cp -t "$ROOT/etc/apt/sources.list.d/" {} +
  # apt settings that say how to reach the archive (proxies, validity checks), not hooks
  local conf
  for conf in /etc/apt/apt.conf.d/*; do
    if grep -q 'Acquire::' "$conf" && ! grep -q 'Invoke' "$conf"; then cp "$conf" "$ROOT/etc/apt/apt.conf.d/"; fi
  done
  local file value path
  local -a pip_files=(/etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf")
  [ -z "${PIP_CONFIG_FILE:-}" ] || pip_files+=("$PIP_CONFIG_FILE")
  for file in "${pip_files[@]}"; do
    [ -f "$file" ] || continue
    # a user's file goes to the root's user (root) at the same place under /root
    mkdir -p "$ROOT$(dirname "${file/#$HOME//root}")"
    cp "$file" "$ROOT${file/#$HOME//root}"
    # every path it names (find-links, file:// indexes, constraints): folders bound, files copied
    for value in $(sed -n 's/^[^#=]*=\(.*\)$/\1/p' "$file"); do _root_take_path "$value"; done
  done
  for value in $(env | sed -n 's/^PIP_[A-Z_]*=//p'); do _root_take_path "$value"; done
  # downloads only; apt keeps its .debs (apt-get's default) and pip its HTTP cache between runs
  mkdir -p "$CACHE/apt-archives/partial" "$CACHE/pip-http"
  _root_mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
  _root_mount --bind "$CACHE/pip-http" "$ROOT/root/.cache/pip/http-v2"
}

_root_take_path() {  # a path or file:// URL from pip's configuration, made visible inside ROOT
  local path=${1#file://}
  case "$path" in /*) ;; *) return 0 ;; esac
  path=${path%/}
  # a PEP 503 index (…/simple) links to its files relative to itself: take the repository around it
  if [ "${path##*/}" = simple ]; then path=${path%/simple}; fi
  if [ -d "$path" ] && ! mountpoint -q "$ROOT$path" 2>/dev/null; then
    _root_mount --bind "$path" "$ROOT$path"
    mount -o remount,bind,ro "$ROOT$path"
  elif [ -f "$path" ] && [ ! -e "$ROOT$path" ]; then
    mkdir -p "$ROOT$(dirname "$path")"
    cp "$path" "$ROOT$path"
  fi
}

# The kernel file systems a Debian machine has: /proc, /sys, /dev (with its own /dev/shm), /run.
fresh_root_mount_system() {
  # the root a mount point of its own, as / is (`unshare --mount` needs it to change propagation)
  if ! mountpoint -q "$ROOT"; then
    _root_mount --bind "$ROOT" "$ROOT"
    mount --make-private "$ROOT"  # what is mounted inside stays inside
  fi
  _root_mount -t proc proc "$ROOT/proc"
  _root_mount --rbind /sys "$ROOT/sys"
  mount --make-rslave "$ROOT/sys"
  _root_mount --rbind /dev "$ROOT/dev"
  mount --make-rslave "$ROOT/dev"
  _root_mount -t tmpfs -o mode=1777,nosuid,nodev shm "$ROOT/dev/shm"
  _root_mount -t tmpfs -o mode=0755,nosuid,nodev run "$ROOT/run"
  if [ ! -s "$ROOT/etc/machine-id" ]; then  # what a booted machine has (systemd-analyze reads it)
    tr -d - < /proc/sys/kernel/random/uuid > "$ROOT/etc/machine-id"
  fi
}

# ROOT_CMD: the command that runs a bash command line inside the root, as root in
# /opt/edge-inspector (or $ROOT_CWD), with a clean environment: a login's PATH and HOME, the host's
# PIP_* and proxy variables, and the VAR=value words in $ROOT_ENV.
fresh_root_command() {
  local -a env_vars=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                     LANG=C.UTF-8 TERM=dumb USER=root LOGNAME=root)
  local var
  while IFS= read -r var; do
    env_vars+=("$var")
  done < <(env | grep -E '^(PIP_[A-Z_]*|https?_proxy|no_proxy|HTTPS?_PROXY|NO_PROXY)=' || true)
  env_vars+=(${ROOT_ENV[@]+"${ROOT_ENV[@]}"})
  ROOT_CMD=(chroot "$ROOT" /usr/bin/env -i "${env_vars[@]}" /bin/bash -c "cd ${ROOT_CWD:-/opt/edge-inspector} && $1")
}

fresh_root_exec() {  # COMMAND_LINE: run it inside the root (see fresh_root_command)
  fresh_root_command "$1"
  "${ROOT_CMD[@]}"
}

# Stop what still runs inside the root (by process id: only processes whose root is ROOT), then
# unmount everything mounted under it, innermost first. Safe to call more than once.
fresh_root_cleanup() {
  local pid signal mnt
  for signal in TERM KILL; do
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
      if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$ROOT" ]; then kill -s "$signal" "$pid" 2>/dev/null; fi
    done
    if [ "$signal" = TERM ]; then sleep 2; fi
  done
  while IFS= read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done < <(_root_mount_points)
}

# True when nothing is mounted at or under ROOT any more (only then may the root be deleted).
fresh_root_unmounted() {
  [ -z "$(_root_mount_points)" ]
}
