#!/usr/bin/env bash
# The load benchmark of issue #4: portcullis against a bare nginx proxy_pass, on
# loopback, with a session obtained through a real sign-in. The upstream, nginx
# and signed-in portcullis all get the same request, session cookie included.
# The upstream's answer says what reached it (X-Forwarded-User, and whether the
# portcullis session cookie did), so a proxy that forwards the wrong request
# fails the run however fast it is.
# The hyper floor (examples/hyper_floor.rs), a bare hyper reverse proxy with no
# authentication, gets the same request too: what any proxy built on portcullis'
# HTTP stack can reach here, and so how far nginx parity is within reach.
# A second portcullis with `session.store = "redis"` (and a local redis-server)
# gets it too, with its own session cookie: after its first request the session
# is served from that instance's cache, as in production.
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
# signed-in run and print the hottest functions), KEEP_WORK (0; 1: keep the work
# directory with the servers' logs and configs), ACCESS_LOG (1: both proxies
# write an access line per request to a file, nginx buffered as in a typical
# production config (`buffer=32k flush=1s`), portcullis its default access log
# on stderr, which is that file; 0: neither does). The upstream and the hyper
# floor never log. SHAPES (all; none, or names from bench/shapes/*.sh such as
# "tls h2"): the deployed shapes measured after the main runs, one wrk (or h2load)
# run of DURATION each; SHAPES_ONLY (0; 1: only the shapes, nothing written).
set -euo pipefail

# The exact command, for the results: the overrides given, then the script.
COMMAND="bench/load.sh"
for var in ROUNDS DURATION CONNECTIONS MEMORY_REQUESTS SIGN_IN_SECONDS SIGN_IN_CONNS ACCESS_LOG SHAPES; do
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
ACCESS_LOG=${ACCESS_LOG:-1}
SHAPES=${SHAPES:-all}
SHAPES_ONLY=${SHAPES_ONLY:-0}
((ROUNDS >= 1)) || { echo "bench/load.sh: ROUNDS must be at least 1" >&2; exit 1; }

UPSTREAM_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
PORTCULLIS_PORT=$((BASE_PORT + 3))
IDP_PORT=$((BASE_PORT + 4))
HYPER_FLOOR_PORT=$((BASE_PORT + 5))
PORTCULLIS_REDIS_PORT=$((BASE_PORT + 6))
REDIS_PORT=$((BASE_PORT + 7))
# Servers on core 0, load generators on core 1.
SERVER_CPU=0
CLIENT_CPU=1
# The upstream's answer: small, and naming what reached it. @USER@ becomes the
# request's X-Forwarded-User, @COOKIE@ "yes" or "no": whether the request still
# carried the portcullis session cookie (`_portcullis`, as nginx's
# $cookie__portcullis sees it). Every 200 must carry exactly the body expected for
# its target (expected_body).
BODY_TEMPLATE="hello from the upstream; X-Forwarded-User=<@USER@>; portcullis cookie=@COOKIE@"
# Whom the bench signs in as: bench_idp's login_hint=ada, the demo provider's
# user whose `sub` is "ada", which portcullis forwards as X-Forwarded-User (the
# default [headers] map).
SIGNED_IN_USER=ada

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
RUNS="$WORK/runs.tsv"
SHAPE_ROWS="$WORK/shapes.tsv"
SCRIPT=bench/load.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# === processes we start, and only those, are stopped on exit ===

cleanup() {
  stop_all
  for conf in "$WORK"/nginx-*.conf; do
    [[ -e $conf ]] && nginx -p "$WORK" -c "$conf" -s stop 2>/dev/null || true
  done
  remove_work
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
  command -v ss >/dev/null || missing+=(iproute2)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v cc >/dev/null || missing+=(gcc) # bench/shapes/full_handshake.c
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
  log "building portcullis and the bench helpers (release)"
  # Two builds: examples may use dev-dependencies, whose features (tokio's
  # test-util: a mutex in every clock read) would otherwise reach the binary.
  (cd "$ROOT" && cargo build --release --quiet --bin portcullis)
  (cd "$ROOT" && cargo build --release --quiet --example bench_idp)
  # The floor is a package of its own (bench/hyper_floor), for the same reason.
  (cd "$ROOT" && cargo build --release --quiet --manifest-path bench/hyper_floor/Cargo.toml --target-dir target)
}

# === servers ===

# Workers default to 1, pinned to the server core.
start_nginx() { # name conf_body [access_log directive] [workers] [cpus]
  local name=$1 conf="$WORK/nginx-$1.conf" access_log=${3:-"access_log off;"}
  mkdir -p "$WORK/$name"
  cat >"$conf" <<EOF
worker_processes ${4:-1};
pid $WORK/nginx-$name.pid;
error_log $WORK/nginx-$name.error.log warn;
events { worker_connections 4096; }
http {
  $access_log
  keepalive_requests 10000000;
  client_body_temp_path $WORK/$name/body;
  proxy_temp_path $WORK/$name/proxy;
  fastcgi_temp_path $WORK/$name/fastcgi;
  uwsgi_temp_path $WORK/$name/uwsgi;
  scgi_temp_path $WORK/$name/scgi;
$2
}
EOF
  taskset -c "${5:-$SERVER_CPU}" nginx -p "$WORK" -c "$conf"
}

upstream_body() { # x_forwarded_user yes|no
  local body=${BODY_TEMPLATE/@USER@/"$1"}
  printf '%s' "${body/@COOKIE@/"$2"}"
}

# The body a 200 from this target must carry exactly.
expected_body() { # target
  case $1 in
    # Sent the session cookie, which passes through untouched; nobody adds an identity.
    direct | nginx | hyper-floor) upstream_body "" yes ;;
    nginx-nocookie) upstream_body "" no ;;
    # portcullis strips its own cookie and forwards the signed-in identity.
    portcullis | portcullis-redis) upstream_body "$SIGNED_IN_USER" no ;;
    *) die "no body expected from $1" ;;
  esac
}

start_servers() {
  # `if` with `return` is safe in a location; the cookie variable only points into
  # the Cookie header, so the upstream does no per-request copy of the session.
  start_nginx upstream "
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / {
      default_type text/plain;
      if (\$cookie__portcullis) { return 200 \"$(upstream_body '$http_x_forwarded_user' yes)\"; }
      return 200 \"$(upstream_body '$http_x_forwarded_user' no)\";
    }
  }"
  # The bare-proxy reference: proxy_pass with an upstream keep-alive pool; with
  # ACCESS_LOG=1 it logs each request, as portcullis does.
  local proxy_access_log="access_log off;"
  if [[ $ACCESS_LOG == 1 ]]; then
    proxy_access_log="access_log $WORK/proxy/access.log combined buffer=32k flush=1s;"
  fi
  start_nginx proxy "
  upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }" "$proxy_access_log"

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
[log]
access = $([[ $ACCESS_LOG == 1 ]] && echo true || echo false)
EOF
  taskset -c "$SERVER_CPU" "$ROOT/target/release/portcullis" run --config "$WORK/portcullis.toml" \
    2>"$WORK/portcullis.err" &
  PIDS+=($!)
  PORTCULLIS_PID=$!
  wait_for "http://127.0.0.1:$PORTCULLIS_PORT/oauth2/readyz" 200

  # The same portcullis with its sessions in Redis: no persistence, loopback only.
  mkdir -p "$WORK/redis"
  taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  REDIS_PID=$!
  sed -e "s/127.0.0.1:$PORTCULLIS_PORT/127.0.0.1:$PORTCULLIS_REDIS_PORT/g" \
    -e "s|^\[session\]$|[session]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:$REDIS_PORT/\"|" \
    "$WORK/portcullis.toml" >"$WORK/portcullis-redis.toml"
  taskset -c "$SERVER_CPU" "$ROOT/target/release/portcullis" run --config "$WORK/portcullis-redis.toml" \
    2>"$WORK/portcullis-redis.err" &
  PIDS+=($!)
  PORTCULLIS_REDIS_PID=$!
  wait_for "http://127.0.0.1:$PORTCULLIS_REDIS_PORT/oauth2/readyz" 200

  taskset -c "$SERVER_CPU" "$ROOT/target/release/hyper_floor" \
    "127.0.0.1:$HYPER_FLOOR_PORT" "127.0.0.1:$UPSTREAM_PORT" 2>"$WORK/hyper_floor.err" &
  PIDS+=($!)
  HYPER_FLOOR_PID=$!
  wait_for "http://127.0.0.1:$UPSTREAM_PORT/" 200
  wait_for "http://127.0.0.1:$NGINX_PORT/" 200
  wait_for "http://127.0.0.1:$HYPER_FLOOR_PORT/" 200
}

# The pids whose CPU and memory count for a target (for nginx, master and workers).
server_pids() { # target
  case $1 in
    direct) nginx_pids upstream ;;
    nginx | nginx-nocookie) nginx_pids proxy ;;
    # Its Redis works for it, so counts with it.
    portcullis-redis) echo "$PORTCULLIS_REDIS_PID" "$REDIS_PID" ;;
    portcullis*) echo "$PORTCULLIS_PID" ;;
    hyper-floor) echo "$HYPER_FLOOR_PID" ;;
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
    portcullis-redis) echo "http://127.0.0.1:$PORTCULLIS_REDIS_PORT/" ;;
    portcullis*) echo "http://127.0.0.1:$PORTCULLIS_PORT/" ;;
    hyper-floor) echo "http://127.0.0.1:$HYPER_FLOOR_PORT/" ;;
    *) die "unknown target $1" ;;
  esac
}

# wrk against a target for some seconds: the command line, check.lua's arguments
# included. direct, nginx, portcullis and hyper-floor get the same request,
# session cookie included, so the proxies read (and nginx and hyper-floor
# forward) the same bytes; nginx-nocookie is nginx without it, as this benchmark
# measured nginx before, for reference. check.lua compares every 200's body with the exact expected one, and
# checks a 302's Location instead.
wrk_command() { # target seconds connections
  local target=$1 seconds=$2 conns=$3 status=200 body="" cookie=""
  case $target in
    direct | nginx | portcullis | hyper-floor) cookie=$SESSION_COOKIE body=$(expected_body "$target") ;;
    nginx-nocookie) body=$(expected_body "$target") ;;
    portcullis-redis) cookie=$REDIS_SESSION_COOKIE body=$(expected_body "$target") ;;
    portcullis-anonymous) status=302 ;;
    *) die "unknown target $target" ;;
  esac
  WRK_COMMAND=(timeout $((seconds + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${seconds}s"
    -s "$ROOT/bench/check.lua" "$(url_of "$target")" -- "$status" "$body" "$cookie")
}

# wrk's output to its RESULT line; fails the benchmark on any wrong answer, any
# socket error, or no answer at all.
check_result() { # target wrk_output
  local target=$1 result
  result=$(grep '^RESULT ' <<<"$2") || die "wrk printed no result for $target: $2"
  if ! grep -q ' bad=0 ' <<<"$result" || ! grep -q ' socket_errors=0 ' <<<"$result"; then
    die "wrong answers from $target: $result"
  fi
  if grep -q ' good=0 ' <<<"$result"; then
    die "no answers from $target: $result"
  fi
  echo "$result"
}

# Runs wrk once; prints its RESULT line. Fails the benchmark on any wrong answer.
wrk_run() { # target seconds connections
  local target=$1 out
  wrk_command "$@"
  out=$("${WRK_COMMAND[@]}") || die "wrk failed against $target"
  check_result "$target" "$out"
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

# RSS while 256 keep-alive connections hammer a target, sampled halfway, with the
# same checks as every other run; one line of memory.tsv: kind, RSS, open connections.
run_256() { # target port kind
  local target=$1 port=$2 kind=$3 pids rss conns wrk_pid result
  pids=$(server_pids "$target")
  log "$target RSS with 256 keep-alive connections"
  wrk_command "$target" "$DURATION" 256
  "${WRK_COMMAND[@]}" >"$WORK/wrk256-$target.out" &
  wrk_pid=$!
  PIDS+=("$wrk_pid") # stopped on exit should the run fail before the wait
  sleep $((DURATION / 2 + 1))
  rss=$(rss_kb $pids)
  # The server's end of each client connection; report.py gives no verdict unless 256.
  conns=$(ss -Htn state established "( sport = :$port )" | wc -l) || conns="?"
  wait "$wrk_pid" || die "wrk with 256 connections failed against $target"
  forget "$wrk_pid"
  result=$(check_result "$target (256 connections)" "$(cat "$WORK/wrk256-$target.out")")
  printf '%s\t%s\t%s\n' "$kind" "$rss" "$conns" >>"$WORK/memory.tsv"
  log "256 connections to $target ($conns open): RSS ${rss} kB; $result"
}

# The 1M-request series comes first, from the RSS the measured rounds left: after
# the 256-connection run, growth could hide in memory the allocator freed then.
memory_runs() {
  local pids=$PORTCULLIS_PID result total=0 chunk=0
  log "portcullis RSS across $MEMORY_REQUESTS signed-in requests"
  printf 'requests\t0\t%s\n' "$(rss_kb $pids)" >>"$WORK/memory.tsv"
  while ((total < MEMORY_REQUESTS && chunk < 100)); do
    result=$(wrk_run portcullis 5 "$CONNECTIONS")
    total=$((total + $(field requests "$result")))
    chunk=$((chunk + 1))
    printf 'requests\t%s\t%s\n' "$total" "$(rss_kb $pids)" >>"$WORK/memory.tsv"
  done
  log "RSS after $total requests: $(rss_kb $pids) kB"

  run_256 portcullis "$PORTCULLIS_PORT" rss256
  # What the HTTP stack alone holds for as many connections, and what nginx does.
  run_256 hyper-floor "$HYPER_FLOOR_PORT" floor256
  run_256 nginx "$NGINX_PORT" nginx256
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

# === deployed shapes (bench/shapes/*.sh) ===

# Each file in bench/shapes defines `shape_<name>` functions, adds the names to
# SHAPE_NAMES, and records its measurements with shape_row; report.py renders
# one table per section, in the order the rows came.
SHAPE_NAMES=()
for shape_file in "$ROOT"/bench/shapes/*.sh; do
  [[ -e $shape_file ]] || continue
  # shellcheck source=/dev/null
  source "$shape_file"
done

# One row of a shape's table. requests and duration_us give req/s; cpu_ticks
# (the servers' utime + stime over the run) over requests gives CPU per request;
# p50/p99 in µs, "-" where the tool gives none; the note is shown as is.
shape_row() { # section label requests duration_us p50_us p99_us cpu_ticks note
  (($# == 8)) || die "shape_row takes 8 fields, got $#: $*"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SHAPE_ROWS"
  log "$1 / $2: $3 requests in $4 µs, p99 $6 µs, $7 ticks; $8"
}

# wrk with check.lua against a URL for DURATION seconds, recorded as a shape
# row with the CPU of the given server pids. check.lua's arguments follow the
# URL: status, exact body, cookie, and an optional extra header ("Name: value").
# SHAPE_CONNECTIONS (default CONNECTIONS) sets the connections.
shape_wrk() { # section label "pids" note url status body cookie [header]
  local section=$1 label=$2 pids=$3 note=$4 url=$5 before after out result
  shift 5
  before=$(cpu_ticks $pids)
  out=$(timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"${SHAPE_CONNECTIONS:-$CONNECTIONS}" \
    -d"${DURATION}s" -s "$ROOT/bench/check.lua" "$url" -- "$@") || die "wrk failed against $label"
  after=$(cpu_ticks $pids)
  result=$(check_result "$label" "$out")
  shape_row "$section" "$label" "$(field requests "$result")" "$(field duration_us "$result")" \
    "$(field p50_us "$result")" "$(field p99_us "$result")" $((after - before)) "$note"
}

run_shapes() {
  local names=$SHAPES name
  [[ $names == none ]] && return
  [[ $names == all ]] && names=${SHAPE_NAMES[*]}
  for name in $names; do
    declare -F "shape_${name//-/_}" >/dev/null || die "unknown shape '$name' (known: ${SHAPE_NAMES[*]})"
    log "shape $name"
    "shape_${name//-/_}"
  done
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
# Each target's answer once, with a readable message if it is not the expected one.
for target in direct nginx nginx-nocookie portcullis hyper-floor; do
  header=()
  [[ $target == nginx-nocookie ]] || header=(-H "Cookie: $SESSION_COOKIE")
  got=$(curl -s "${header[@]}" "$(url_of "$target")") || die "no answer from $target"
  [[ $got == "$(expected_body "$target")" ]] ||
    die "$target answered '$got', expected '$(expected_body "$target")'"
done
log "signed in; the session cookie is ${#SESSION_COOKIE} bytes"
REDIS_SESSION_COOKIE=$(taskset -c "$CLIENT_CPU" "$ROOT/target/release/examples/bench_idp" cookie \
  "http://127.0.0.1:$PORTCULLIS_REDIS_PORT") || die "could not sign in to portcullis-redis"
got=$(curl -s -H "Cookie: $REDIS_SESSION_COOKIE" "$(url_of portcullis-redis)") || die "no answer from portcullis-redis"
[[ $got == "$(expected_body portcullis-redis)" ]] ||
  die "portcullis-redis answered '$got', expected '$(expected_body portcullis-redis)'"
log "signed in to portcullis-redis; its session cookie is ${#REDIS_SESSION_COOKIE} bytes"

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
if [[ $SHAPES_ONLY == 1 ]]; then
  run_shapes
  python3 "$ROOT/bench/report.py" --shapes-only --shapes "$SHAPE_ROWS" --clk-tck "$(getconf CLK_TCK)"
  exit 0
fi

TARGETS=(direct nginx nginx-nocookie portcullis portcullis-anonymous portcullis-redis hyper-floor)
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
run_shapes

python3 "$ROOT/bench/report.py" \
  --runs "$RUNS" --memory "$WORK/memory.tsv" --sign-ins "$WORK/sign_ins.txt" \
  --shapes "$SHAPE_ROWS" --clk-tck "$(getconf CLK_TCK)" --command "$COMMAND" --cookie-bytes "${#SESSION_COOKIE}" \
  --connections "$CONNECTIONS" --duration "$DURATION" --rounds "$ROUNDS" \
  --nginx-version "$(nginx -v 2>&1 | sed 's/^nginx version: nginx\///')" \
  --wrk-version "$(wrk -v 2>&1 | head -n1 | awk '{ print $2 }')" \
  $([[ $WRITE_RESULTS == 1 ]] && echo --write "$ROOT/BENCHMARKS.md")
