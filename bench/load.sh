#!/usr/bin/env bash
# The load benchmark of issue #4: portcullis against a bare nginx proxy_pass, on
# loopback, with a session obtained through a real sign-in. The upstream, nginx
# and signed-in portcullis all get the same request, session cookie included.
# Stops by itself; every run is bounded in time. Results go to stdout and into
# BENCHMARKS.md.
#
#   bench/load.sh                         # 5 rounds of 10 s per target
#   ROUNDS=1 DURATION=3 bench/load.sh     # a quick look
#
# Environment: ROUNDS (5), DURATION (10, seconds per run), CONNECTIONS (64),
# MEMORY_REQUESTS (1000000), SIGN_IN_SECONDS (5), SIGN_IN_CONNS (8),
# BASE_PORT (18080), WRITE_RESULTS (1: update BENCHMARKS.md), SKIP_BUILD (0),
# PROFILE (0; 1: instead of the benchmark, sample portcullis with perf during one
# signed-in run and print the hottest functions).
set -euo pipefail

# The exact command, for the results: the overrides given, then the script.
COMMAND="bench/load.sh"
for var in ROUNDS DURATION CONNECTIONS MEMORY_REQUESTS SIGN_IN_SECONDS SIGN_IN_CONNS; do
  [[ -z ${!var:-} ]] || COMMAND="$var=${!var} $COMMAND"
done

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
MEMORY_REQUESTS=${MEMORY_REQUESTS:-1000000}
SIGN_IN_SECONDS=${SIGN_IN_SECONDS:-5}
SIGN_IN_CONNS=${SIGN_IN_CONNS:-8}
BASE_PORT=${BASE_PORT:-18080}
WRITE_RESULTS=${WRITE_RESULTS:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-0}

UPSTREAM_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
PORTCULLIS_PORT=$((BASE_PORT + 3))
IDP_PORT=$((BASE_PORT + 4))
# Servers on core 0, load generators on core 1.
SERVER_CPU=0
CLIENT_CPU=1
# The upstream's fixed answer; every 200 must carry exactly this many bytes.
BODY="hello from the upstream: a small fixed body, as a health check or tiny JSON would be"
BODY_LEN=${#BODY}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
RUNS="$WORK/runs.tsv"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/load.sh: %s\n' "$*" >&2; exit 1; }

# === processes we start, and only those, are stopped on exit ===

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  for conf in "$WORK"/nginx-*.conf; do
    [[ -e $conf ]] && nginx -p "$WORK" -c "$conf" -s stop 2>/dev/null || true
  done
  if [[ ${KEEP_WORK:-0} == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# === tools ===

install_tools() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v python3 >/dev/null || missing+=(python3)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  (($(nproc) >= 2)) || die "needs 2 cores: servers on one, the load generator on the other"
}

build() {
  if [[ $SKIP_BUILD == 1 ]]; then
    return
  fi
  log "building portcullis and the bench helper (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin portcullis --example bench_idp)
}

# === servers ===

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

start_nginx() { # name conf_body
  local name=$1 conf="$WORK/nginx-$1.conf"
  mkdir -p "$WORK/$name"
  cat >"$conf" <<EOF
worker_processes 1;
pid $WORK/nginx-$name.pid;
error_log $WORK/nginx-$name.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $WORK/$name/body;
  proxy_temp_path $WORK/$name/proxy;
  fastcgi_temp_path $WORK/$name/fastcgi;
  uwsgi_temp_path $WORK/$name/uwsgi;
  scgi_temp_path $WORK/$name/scgi;
$2
}
EOF
  taskset -c "$SERVER_CPU" nginx -p "$WORK" -c "$conf"
}

start_servers() {
  start_nginx upstream "
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { default_type text/plain; return 200 \"$BODY\"; }
  }"
  # The bare-proxy reference: proxy_pass with an upstream keep-alive pool.
  start_nginx proxy "
  upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"

  # The identity provider is idle during the proxy runs (JWKS cached), and shares
  # the load generator's core while sign-ins are measured.
  taskset -c "$CLIENT_CPU" "$ROOT/target/release/examples/bench_idp" serve "$IDP_PORT" \
    >"$WORK/idp.out" 2>"$WORK/idp.err" &
  PIDS+=($!)
  wait_for "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration" 200

  cat >"$WORK/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$PORTCULLIS_PORT"
public_url = "http://127.0.0.1:$PORTCULLIS_PORT"
[upstream]
url = "http://127.0.0.1:$UPSTREAM_PORT"
[session]
secret = "$("$ROOT/target/release/portcullis" secret)"
# idle_timeout stays unset: with it, portcullis re-seals the cookie every minute.
[providers.demo]
issuer = "http://127.0.0.1:$IDP_PORT"
client_id = "portcullis-demo"
client_secret = "demo-secret"
EOF
  taskset -c "$SERVER_CPU" "$ROOT/target/release/portcullis" run --config "$WORK/portcullis.toml" \
    2>"$WORK/portcullis.err" &
  PIDS+=($!)
  PORTCULLIS_PID=$!
  wait_for "http://127.0.0.1:$PORTCULLIS_PORT/oauth2/readyz" 200
  wait_for "http://127.0.0.1:$UPSTREAM_PORT/" 200
  wait_for "http://127.0.0.1:$NGINX_PORT/" 200
}

# The pids whose CPU and memory count for a target: nginx's master and workers.
server_pids() { # target
  case $1 in
    direct) nginx_pids upstream ;;
    nginx | nginx-nocookie) nginx_pids proxy ;;
    portcullis*) echo "$PORTCULLIS_PID" ;;
    *) die "unknown target $1" ;;
  esac
}

nginx_pids() {
  local master
  master=$(cat "$WORK/nginx-$1.pid")
  echo "$master" $(pgrep -P "$master" || true)
}

cpu_ticks() { # pids...: utime + stime, in clock ticks
  local total=0 pid fields
  for pid in "$@"; do
    # Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
    fields=$(sed 's/^.*) //' "/proc/$pid/stat")
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$fields")))
  done
  echo "$total"
}

rss_kb() { # pids...: VmRSS summed
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")))
  done
  echo "$total"
}

# === load ===

url_of() {
  case $1 in
    direct) echo "http://127.0.0.1:$UPSTREAM_PORT/" ;;
    nginx | nginx-nocookie) echo "http://127.0.0.1:$NGINX_PORT/" ;;
    portcullis*) echo "http://127.0.0.1:$PORTCULLIS_PORT/" ;;
    *) die "unknown target $1" ;;
  esac
}

# Runs wrk once; prints its RESULT line. Fails the benchmark on any wrong answer.
# direct, nginx and portcullis get the same request, session cookie included, so
# the proxies read (and nginx forwards) the same bytes; nginx-nocookie is nginx
# without it, as this benchmark measured nginx before, for reference.
wrk_run() { # target seconds connections
  local target=$1 seconds=$2 conns=$3 status=200 len=$BODY_LEN cookie="" out
  case $target in
    direct | nginx | portcullis) cookie=$SESSION_COOKIE ;;
    nginx-nocookie) ;;
    portcullis-anonymous) status=302 len=-1 ;;
    *) die "unknown target $target" ;;
  esac
  out=$(timeout $((seconds + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${seconds}s" \
    -s "$ROOT/bench/check.lua" "$(url_of "$target")" -- "$status" "$len" "$cookie") ||
    die "wrk failed against $target"
  local result
  result=$(grep '^RESULT ' <<<"$out") || die "wrk printed no result for $target: $out"
  if ! grep -q ' bad=0 ' <<<"$result" || ! grep -q ' socket_errors=0 ' <<<"$result"; then
    die "wrong answers from $target: $result"
  fi
  if grep -q ' good=0 ' <<<"$result"; then
    die "no answers from $target: $result"
  fi
  echo "$result"
}

field() { # name result_line
  sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"
}

measure() { # target round
  local target=$1 round=$2 pids before after result
  pids=$(server_pids "$target")
  before=$(cpu_ticks $pids)
  result=$(wrk_run "$target" "$DURATION" "$CONNECTIONS")
  after=$(cpu_ticks $pids)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" \
    "$(field requests "$result")" "$(field duration_us "$result")" \
    "$(field p50_us "$result")" "$(field p99_us "$result")" \
    $((after - before)) "$(rss_kb $pids)" "$(field refreshed "$result")" >>"$RUNS"
  log "round $round $target: $result"
}

memory_runs() {
  local pids=$PORTCULLIS_PID result total=0 chunk=0 rss
  log "portcullis RSS with 256 keep-alive connections"
  timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c256 -d"$((DURATION))s" \
    -s "$ROOT/bench/check.lua" "$(url_of portcullis)" -- 200 "$BODY_LEN" "$SESSION_COOKIE" \
    >"$WORK/wrk256.out" &
  local wrk_pid=$!
  sleep $((DURATION / 2 + 1))
  rss=$(rss_kb $pids)
  local conns
  conns=$(ss -Htn state established "( sport = :$PORTCULLIS_PORT )" 2>/dev/null | wc -l || echo "?")
  wait "$wrk_pid" || die "wrk with 256 connections failed"
  result=$(grep '^RESULT ' "$WORK/wrk256.out") || die "no result with 256 connections"
  grep -q ' bad=0 ' <<<"$result" || die "wrong answers with 256 connections: $result"
  printf 'rss256\t%s\t%s\n' "$rss" "$conns" >>"$WORK/memory.tsv"
  log "256 connections ($conns open): RSS ${rss} kB; $result"

  log "portcullis RSS across $MEMORY_REQUESTS signed-in requests"
  printf 'requests\t0\t%s\n' "$(rss_kb $pids)" >>"$WORK/memory.tsv"
  while ((total < MEMORY_REQUESTS && chunk < 100)); do
    result=$(wrk_run portcullis 5 "$CONNECTIONS")
    total=$((total + $(field requests "$result")))
    chunk=$((chunk + 1))
    printf 'requests\t%s\t%s\n' "$total" "$(rss_kb $pids)" >>"$WORK/memory.tsv"
  done
  log "RSS after $total requests: $(rss_kb $pids) kB"
}

sign_in_run() {
  local before after out
  log "sign-ins through the callback for $SIGN_IN_SECONDS s ($SIGN_IN_CONNS at a time)"
  before=$(cpu_ticks "$PORTCULLIS_PID")
  out=$(timeout $((SIGN_IN_SECONDS + 60)) taskset -c "$CLIENT_CPU" \
    "$ROOT/target/release/examples/bench_idp" sign-ins "http://127.0.0.1:$PORTCULLIS_PORT" \
    "$SIGN_IN_CONNS" "$SIGN_IN_SECONDS") || die "sign-ins failed: $out"
  after=$(cpu_ticks "$PORTCULLIS_PID")
  printf '%s cpu_ticks=%s\n' "$out" $((after - before)) >"$WORK/sign_ins.txt"
  log "$out"
}

# === main ===

install_tools
build
log "servers on core $SERVER_CPU, wrk on core $CLIENT_CPU; work directory $WORK"
start_servers
SESSION_COOKIE=$(taskset -c "$CLIENT_CPU" "$ROOT/target/release/examples/bench_idp" cookie \
  "http://127.0.0.1:$PORTCULLIS_PORT") || die "could not sign in"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $SESSION_COOKIE" \
  "http://127.0.0.1:$PORTCULLIS_PORT/") == 200 ]] || die "the session cookie does not sign in"
log "signed in; the session cookie is ${#SESSION_COOKIE} bytes"

profile() {
  command -v perf >/dev/null || die "PROFILE=1 needs perf (apt-get install linux-perf)"
  wrk_run portcullis 1 "$CONNECTIONS" >/dev/null
  perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -o "$WORK/perf.data" -p "$PORTCULLIS_PID" \
    -- sleep "$DURATION" 2>/dev/null &
  local perf_pid=$!
  wrk_run portcullis "$DURATION" "$CONNECTIONS" >&2
  wait "$perf_pid" || true
  perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 60
}
if [[ $PROFILE == 1 ]]; then
  profile
  exit 0
fi

TARGETS=(direct nginx nginx-nocookie portcullis portcullis-anonymous)
for target in "${TARGETS[@]}"; do
  wrk_run "$target" 1 "$CONNECTIONS" >/dev/null # warm-up: connections, pools, caches
done
for round in $(seq 1 "$ROUNDS"); do
  # Interleaved, and each round starts at another target, so drift spreads evenly.
  for i in "${!TARGETS[@]}"; do
    measure "${TARGETS[$(((i + round - 1) % ${#TARGETS[@]}))]}" "$round"
  done
done
memory_runs
sign_in_run

python3 "$ROOT/bench/report.py" \
  --runs "$RUNS" --memory "$WORK/memory.tsv" --sign-ins "$WORK/sign_ins.txt" \
  --clk-tck "$(getconf CLK_TCK)" --command "$COMMAND" --cookie-bytes "${#SESSION_COOKIE}" \
  --connections "$CONNECTIONS" --duration "$DURATION" --rounds "$ROUNDS" \
  --nginx-version "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
  --wrk-version "$(wrk -v 2>&1 | head -n1 | awk '{ print $2 }')" \
  $([[ $WRITE_RESULTS == 1 ]] && echo --write "$ROOT/BENCHMARKS.md")
