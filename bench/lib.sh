# Shared by bench/load.sh and bench/soak.sh (sourced after WORK is set): the
# processes a script starts, and only those, are stopped by pid on exit.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; exit 1; }

PIDS=()
# Stops every process in PIDS; the caller's cleanup adds what else it must stop.
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}

# Removes the work directory, unless KEEP_WORK=1.
remove_work() {
  if [[ ${KEEP_WORK:-0} == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}

# Forgets a process that was waited for: its pid may be reused, so cleanup
# must not signal it.
forget() { # pid
  local kept=() pid
  for pid in "${PIDS[@]}"; do
    [[ $pid == "$1" ]] || kept+=("$pid")
  done
  PIDS=("${kept[@]}")
}

wait_for() { # url expected_status
  local url=$1 want=$2 i
  for i in $(seq 1 300); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == "$want" ]]; then
      return 0
    fi
    sleep 0.1
  done
  die "$url did not answer $want within 30 s"
}
