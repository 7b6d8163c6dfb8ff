# Sourced by setup.sh and tools/fresh_machine.sh: run a command as one named step.
#
#   STEP_NAME=setup STEP_LOG=setup.log
#   step "what it does" command args...
#
# The command (a program or a shell function, run in a subshell with `set -e`: what it sets does not
# outlive the step) sends its output to $STEP_LOG (after a header naming the step and the command); the
# terminal gets one line with the time the step took (and, with STEP_CLOCK=1, first the time since
# the script started, when the step ended). When the command fails, the end of the log is printed
# and the script exits 1; with STEP_KEEP_GOING=1 the step's name is added to STEP_FAILED instead,
# for steps whose failure does not stop the ones after them from saying something.

STEP_TAIL_LINES="${STEP_TAIL_LINES:-30}"
STEP_FAILED=()

step_elapsed() {  # m:ss since the script started
  printf '%d:%02d' $((SECONDS / 60)) $((SECONDS % 60))
}

step() {
  local what=$1 t0=$SECONDS clock=""
  shift
  printf '\n==== %s\n$ %s\n' "$what" "$*" >> "$STEP_LOG"
  # A subshell outside any condition, so that `set -e` holds inside a shell function run as a step
  # (bash ignores it in functions called from an `if` or a `||`).
  local code=0 errexit=0
  [[ $- == *e* ]] && errexit=1
  set +e
  (set -e; "$@") >> "$STEP_LOG" 2>&1
  code=$?
  [ "$errexit" = 0 ] || set -e
  if [ "${STEP_CLOCK:-0}" = 1 ]; then clock="[$(step_elapsed)] "; fi
  if [ "$code" = 0 ]; then
    echo "$STEP_NAME: ${clock}$what ($((SECONDS - t0)) s)"
  else
    echo "$STEP_NAME: ${clock}$what FAILED after $((SECONDS - t0)) s (exit $code); the end of $STEP_LOG:" >&2
    tail -n "$STEP_TAIL_LINES" "$STEP_LOG" | sed 's/^/  | /' >&2
    if [ "${STEP_KEEP_GOING:-0}" = 1 ]; then
      STEP_FAILED+=("$what")
      return 0
    fi
    exit 1
  fi
}
