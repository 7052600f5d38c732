#!/usr/bin/env bash
# The soak test with injected faults (issue #14): MINUTES of mixed traffic on
# loopback through one portcullis (sessions in Redis, bearer tokens on) while
# a fault script, in turn, restarts the upstream, stops the provider for a
# while and starts it again, restarts Redis, reloads the configuration with
# SIGHUP, and rotates the provider's signing key. Not part of `cargo test`.
#
#   bench/soak.sh            # 10 minutes
#   bench/soak.sh 2          # or SOAK_MINUTES=2 bench/soak.sh
#
# Traffic (bench/soak_traffic.py drive): signed-in GETs on 4 long-lived
# sessions, 256 KiB uploads, anonymous browsers (sent to sign in), API clients
# with bearer tokens, full sign-ins through the demo provider, WebSockets (20
# echoed messages each) and 4 MiB downloads streamed over about 6 s.
#
# Each fault's window runs from its start until portcullis is ready again
# (/oauth2/readyz), plus 10 s of grace (soak_traffic.py GRACE). The report
# fails the run, naming the assertion, on: a 5xx made by portcullis other than
# 502/503/504, or any of those outside a fault window; any other wrong answer
# outside a window; a long-lived session refused after a window; a sign-in that
# failed outside a window; RSS or file descriptors growing over the second half.
#
# The provider (examples/bench_idp.rs) makes new signing keys in every
# process, so each restart is a key rotation: sessions live on, new sign-ins
# and new bearer tokens verify once portcullis re-fetches the JWKS for the
# unknown kid. Bearer tokens signed by the old key are refused, as they should
# be: the client takes the new tokens file, and counts a refusal of a token
# from before the restart as "stale token refused", allowed in the window.
# Redis runs with an append-only file in the work directory and restarts on
# it, so sessions survive its restart as they would in production; without
# persistence a Redis restart signs everybody out, by design.
#
# Environment: SOAK_MINUTES (10), FAULT_INTERVAL (40, seconds between faults),
# PROVIDER_DOWN (10, seconds the provider stays stopped), BASE_PORT (18180),
# SKIP_BUILD (0), KEEP_WORK (0; 1 keeps the logs and configs). Bounded: after
# MINUTES + 2 minutes everything is stopped; every process started is stopped
# by its pid on exit.
set -euo pipefail

MINUTES=${1:-${SOAK_MINUTES:-10}}
FAULT_INTERVAL=${FAULT_INTERVAL:-40}
PROVIDER_DOWN=${PROVIDER_DOWN:-10}
BASE_PORT=${BASE_PORT:-18180}
SKIP_BUILD=${SKIP_BUILD:-0}
[[ $MINUTES =~ ^[0-9]+$ ]] && ((MINUTES >= 1)) || { echo "bench/soak.sh: MINUTES must be a whole number, at least 1" >&2; exit 1; }
SECONDS_TOTAL=$((MINUTES * 60))

UPSTREAM_PORT=$((BASE_PORT + 1))
PORTCULLIS_PORT=$((BASE_PORT + 3))
IDP_PORT=$((BASE_PORT + 4))
REDIS_PORT=$((BASE_PORT + 7))
METRICS_PORT=$((BASE_PORT + 8))

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/portcullis-soak.XXXXXX)
TRAFFIC="$ROOT/bench/soak_traffic.py"
SCRIPT=bench/soak.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# === processes we start, and only those, are stopped on exit ===

cleanup() {
  stop_all
  remove_work
}
trap cleanup EXIT
trap 'die "interrupted, or the deadline passed"' TERM INT

stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

# The hard deadline: MINUTES + 2 minutes, then this script is told to stop.
python3 -c 'import os, signal, sys, time; time.sleep(float(sys.argv[1])); os.kill(int(sys.argv[2]), signal.SIGTERM)' \
  $((SECONDS_TOTAL + 120)) $$ &
PIDS+=($!)

for tool in python3 curl redis-server; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
if [[ $SKIP_BUILD != 1 ]]; then
  log "building portcullis and bench_idp (release)"
  # Two builds: the example's dev-dependencies must not reach the binary (see bench/load.sh).
  (cd "$ROOT" && cargo build --release --quiet --bin portcullis)
  (cd "$ROOT" && cargo build --release --quiet --example bench_idp)
fi

# === the servers, each restartable ===

start_upstream() {
  python3 "$TRAFFIC" upstream "$UPSTREAM_PORT" >>"$WORK/upstream.log" 2>&1 &
  UPSTREAM_PID=$!
  PIDS+=($!)
  wait_for "http://127.0.0.1:$UPSTREAM_PORT/" 200
}

# The provider writes 50 bearer tokens signed by its key, then prints its
# issuer; the client's file is replaced in one rename, so it never reads half
# of one.
start_provider() {
  rm -f "$WORK/tokens.new"
  "$ROOT/target/release/examples/bench_idp" serve "$IDP_PORT" tokens 50 "$WORK/tokens.new" \
    >"$WORK/idp.out" 2>>"$WORK/idp.log" &
  IDP_PID=$!
  PIDS+=($!)
  local i
  for i in $(seq 1 300); do
    [[ -s $WORK/idp.out ]] && break
    sleep 0.1
  done
  [[ -s $WORK/idp.out ]] || die "the provider did not start: $(tail -n 3 "$WORK/idp.log")"
  mv "$WORK/tokens.new" "$WORK/tokens"
}

start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync always --dir "$WORK/redis" >>"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=($!)
  local i
  for i in $(seq 1 100); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true) == PONG ]] && return 0
    sleep 0.1
  done
  die "redis-server did not start"
}

start_portcullis() {
  cat >"$WORK/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$PORTCULLIS_PORT"
public_url = "http://127.0.0.1:$PORTCULLIS_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
[upstream]
url = "http://127.0.0.1:$UPSTREAM_PORT"
[session]
secret = "$("$ROOT/target/release/portcullis" secret)"
store = "redis"
redis_url = "redis://127.0.0.1:$REDIS_PORT/"
[access]
bearer_tokens = true
[providers.demo]
issuer = "http://127.0.0.1:$IDP_PORT"
client_id = "portcullis-demo"
client_secret = "demo-secret"
[log]
access = false
EOF
  "$ROOT/target/release/portcullis" run --config "$WORK/portcullis.toml" 2>"$WORK/portcullis.log" &
  PORTCULLIS_PID=$!
  PIDS+=($!)
  wait_for "http://127.0.0.1:$PORTCULLIS_PORT/oauth2/readyz" 200
}

# === faults ===

# Runs a fault and records its window: from its start until portcullis is ready again.
fault() { # name command...
  local name=$1 start
  shift
  start=$(date +%s.%N)
  log "fault: $name"
  "$@"
  wait_for "http://127.0.0.1:$PORTCULLIS_PORT/oauth2/readyz" 200
  printf '%s\t%s\t%s\n' "$start" "$(date +%s.%N)" "$name" >>"$WORK/windows.tsv"
}

restart_upstream() { stop "$UPSTREAM_PID"; sleep 2; start_upstream; }
stop_start_provider() { stop "$IDP_PID"; sleep "$PROVIDER_DOWN"; start_provider; }
restart_redis() { stop "$REDIS_PID"; sleep 2; start_redis; }
reloads_applied() {
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
    sed -n 's/^portcullis_config_reloads_total{result="applied"} //p'
}
reload_config() {
  local before
  before=$(reloads_applied)
  kill -HUP "$PORTCULLIS_PID"
  sleep 1
  # The reload must have been applied, not refused.
  (($(reloads_applied) > before)) || die "SIGHUP: the configuration reload was not applied (see $WORK/portcullis.log)"
}
rotate_key() { stop "$IDP_PID"; start_provider; }

FAULTS=(restart_upstream stop_start_provider restart_redis reload_config rotate_key)

# === main ===

mkdir -p "$WORK/redis"
: >"$WORK/windows.tsv"
start_redis
start_upstream
start_provider
start_portcullis
log "servers up; work directory $WORK; soaking for $MINUTES min, a fault every $FAULT_INTERVAL s"

python3 "$TRAFFIC" drive "http://127.0.0.1:$PORTCULLIS_PORT" "$SECONDS_TOTAL" "$WORK/tokens" \
  "$WORK/requests.tsv" 2>"$WORK/drive.log" &
DRIVER_PID=$!
PIDS+=($!)
python3 "$TRAFFIC" sample "$PORTCULLIS_PID" "$SECONDS_TOTAL" "$WORK/samples.tsv" &
PIDS+=($!)

# Faults from 30 s in, while one can still end (with its grace) before the traffic does.
began=$(date +%s)
next=$((began + 30))
i=0
while (($(date +%s) + 45 < began + SECONDS_TOTAL)); do
  now=$(date +%s)
  if ((now < next)); then
    sleep $((next - now))
    continue
  fi
  kill -0 "$DRIVER_PID" 2>/dev/null || die "the traffic driver stopped early: $(tail -n 5 "$WORK/drive.log")"
  fault "${FAULTS[$((i % ${#FAULTS[@]}))]}" "${FAULTS[$((i % ${#FAULTS[@]}))]}"
  i=$((i + 1))
  next=$(($(date +%s) + FAULT_INTERVAL))
done

wait "$DRIVER_PID" || die "the traffic driver failed: $(tail -n 5 "$WORK/drive.log")"
forget "$DRIVER_PID"
cat "$WORK/drive.log" >&2

echo "## soak: $MINUTES min, $i faults ($(date -u +%Y-%m-%d), $(nproc) cores)"
echo
echo "portcullis' own counters at the end:"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
  grep -E '^portcullis_(requests_total|sign_ins_total|bearer_tokens_total|refreshes_total|config_reloads_total|provider_metadata_fetches_total|open_connections|open_tunnels)' |
  sed 's/^/    /'
echo
grep -E 'panicked|ERROR' "$WORK/portcullis.log" | head -n 20 | sed 's/^/portcullis.log: /' || true
verdict=0
python3 "$TRAFFIC" report "$WORK/requests.tsv" "$WORK/windows.tsv" "$WORK/samples.tsv" || verdict=$?
if grep -q panicked "$WORK/portcullis.log"; then
  echo "SOAK FAILED: portcullis panicked (above)"
  verdict=1
fi
exit "$verdict"
