# Sourced by tools/fresh_machine.sh: the README's commands, read from it and run in the fresh root.
# Uses fresh_root_exec (tools/fresh_root.sh) and README (the tested commit's README.md).

# The bash code block of a README section ("## TITLE"), comments and blank lines dropped.
readme_block() {
  awk -v title="## $1" '$0 == title {f = 1; next} f && /^## /{exit} f' "$README" \
    | awk '/^```bash/{n++; inside = 1; next} /^```/{inside = 0; next} inside && n == 1' \
    | sed 's/[[:space:]]*#.*$//' | grep .
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
