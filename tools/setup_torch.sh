# Sourced by setup.sh --train: which build of PyTorch to install, and from where.
#
# PyTorch only trains the models, on the CPU. On x86-64, PyPI's default `torch` is the CUDA build
# (about 1 GB, plus about 3 GB of nvidia-* libraries pulled in with it); the CPU build is about
# 200 MB and lives on PyTorch's own index. In order of preference:
#   1. whatever torch .venv already has that satisfies pyproject.toml (nothing to download);
#   2. the build pip's own configuration picks, when that is a CPU build (a `torch-…+cpu` wheel in a
#      find-links folder or a mirror named in pip.conf / PIP_* variables);
#   3. the CPU index ($TORCH_CPU_INDEX, default download.pytorch.org/whl/cpu) when it is reachable;
#   4. PyPI's default build, with a warning that says what is being downloaded.
# Elsewhere (aarch64: PyPI's wheel is the CPU build; JetPack ships its own) pip's default is used.
# Sets: torch_spec (the requirement from pyproject.toml), torch_choice (what, for the step's line),
# torch_needed (0 when nothing is to install) and pip_extra (pip options for the CPU index, or none).

TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

_torch_installed() {
  .venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true
}

# "<version> <url>" of what pip would install for $torch_spec with its configuration as it is
# (nothing when what is installed already satisfies it; pass --ignore-installed to ask regardless).
_torch_pick() {
  local report
  report=$(mktemp)
  if .venv/bin/python -m pip install --dry-run --no-deps --quiet --report "$report" "$@" "$torch_spec" \
      >> "$LOG" 2>&1; then
    .venv/bin/python - "$report" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
if items:
    print(items[0]["metadata"]["version"], items[0]["download_info"]["url"])
EOF
  else
    echo "? (pip could not resolve $torch_spec: see $LOG)"
  fi
  rm -f "$report"
}

_reachable() {
  .venv/bin/python - "$1" >> "$LOG" 2>&1 <<'EOF'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10).close()
EOF
}

choose_torch() {
  torch_spec=$(sed -n 's/^[^#]*"\(torch[=<>~!][^";]*\)".*/\1/p' pyproject.toml | head -n 1)
  torch_needed=1 pip_extra=()
  local pick version where
  if [ -z "$(_torch_pick)" ]; then
    torch_needed=0 torch_choice="torch $(_torch_installed) already installed"
    return
  fi
  if [ "$(uname -m)" != "x86_64" ]; then
    torch_choice="$torch_spec (pip's default build for $(uname -m))"
    return
  fi
  pick=$(_torch_pick --ignore-installed)
  version=${pick%% *} where=${pick#* }
  local why="not PyPI's default for x86-64, the CUDA build of about 4 GB: training runs on the CPU"
  if [[ "$version" == *+cpu ]]; then
    torch_choice="CPU build $version from ${where%/*} ($why)"
  elif _reachable "$TORCH_CPU_INDEX"; then
    pip_extra=(--extra-index-url "$TORCH_CPU_INDEX")
    torch_choice="CPU build of $torch_spec from $TORCH_CPU_INDEX ($why)"
  else
    torch_choice="$torch_spec from PyPI: the CUDA build"
    echo "setup: WARNING: $TORCH_CPU_INDEX is not reachable and pip finds no CPU build of $torch_spec," >&2
    echo "setup: WARNING: so it installs PyPI's x86-64 build, the CUDA one: about 1 GB plus about 3 GB of" >&2
    echo "setup: WARNING: nvidia-* libraries. Training needs only the CPU build: put its wheel" >&2
    echo "setup: WARNING: (torch-…+cpu-….whl) in a folder and re-run with PIP_FIND_LINKS=/that/folder." >&2
  fi
}
