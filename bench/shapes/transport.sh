# Deployed shapes of issue #14, transport; sourced by bench/load.sh, described in
# BENCHMARKS.md ("Deployed shapes: transport").
#   tls      TLS termination, rustls in portcullis against nginx with OpenSSL on
#            the same certificate (ECDSA P-256 and RSA-2048): keep-alive requests,
#            and a new connection with a full handshake for every request.
#   h2       HTTP/2 from clients (h2load), over TLS (ALPN h2) and cleartext (h2c,
#            prior knowledge), portcullis against nginx.
#   scaling  the signed-in path with 1 and 2 threads, nothing pinned: what a
#            second core buys (portcullis, the hyper floor, nginx).
# Servers started here use ports BASE_PORT+20 .. BASE_PORT+29. H2_CLIENTS (16)
# and H2_STREAMS (10): h2load's connections and concurrent streams on each.
SHAPE_NAMES+=(tls h2 scaling)

declare -gA TLS_KEY_NAME=([ecdsa]="ECDSA P-256" [rsa]="RSA-2048")
declare -gA TLS_PORTCULLIS_PORT=([ecdsa]=$((BASE_PORT + 20)) [rsa]=$((BASE_PORT + 22)))
declare -gA TLS_NGINX_PORT=([ecdsa]=$((BASE_PORT + 21)) [rsa]=$((BASE_PORT + 23)))
H2C_NGINX_PORT=$((BASE_PORT + 24))
SCALING_PORTCULLIS_PORT=([1]=$((BASE_PORT + 25)) [2]=$((BASE_PORT + 26)))
SCALING_FLOOR_PORT=$((BASE_PORT + 27))
SCALING_NGINX_PORT=([1]=$((BASE_PORT + 28)) [2]=$((BASE_PORT + 29)))
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-10}
# Every core: what "nothing pinned" means in the scaling shape.
ALL_CPUS="0-$(($(nproc) - 1))"
# The cores the pinned shapes (tls, h2) report on, as with_core_use takes them.
PINNED_CORES="server_core=$SERVER_CPU client_core=$CLIENT_CPU"

# Filled by tls_servers, once per key type (ecdsa, rsa); TLS_NEGOTIATED by
# server and key type (portcullis-ecdsa, nginx-rsa, ...).
declare -gA TLS_COOKIE=() TLS_PORTCULLIS_PID=() TLS_NEGOTIATED=()

TLS_SECTION="TLS termination: HTTP/1.1 over TLS (wrk -t1 -c${SHAPE_CONNECTIONS:-$CONNECTIONS}),\
 portcullis (rustls) and nginx (OpenSSL), same certificate"
H2_SECTION="HTTP/2 from clients: h2load -c$H2_CLIENTS -m$H2_STREAMS, signed-in GETs"
SCALING_SECTION="Scaling: 1 and 2 threads, nothing pinned\
 (wrk -t1 -c${SHAPE_CONNECTIONS:-$CONNECTIONS} and the upstream share the $(nproc) cores)"

# === helpers ===

# The access log of nginx started here, as the proxy's in load.sh: buffered, or none.
transport_access_log() { # name
  if [[ $ACCESS_LOG == 1 ]]; then
    echo "access_log $WORK/$1/access.log combined buffer=32k flush=1s;"
  else
    echo "access_log off;"
  fi
}

# The proxy of load.sh's nginx: HTTP/1.1 to the same upstream, a keep-alive pool.
transport_proxy() { # listen_parameters
  cat <<EOF
  upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  server {
    listen $1 backlog=4096;
    ${2:-}
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
EOF
}

# wait_for, but failing at once with the server's errors if it exits first.
transport_wait_for() { # pid stderr_file url expected_status [one VAR=value for curl]
  local pid=$1 err=$2 url=$3 want=$4 i
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || die "the server for $url exited: $(cat "$err")"
    [[ $(env ${5:+"$5"} curl -s -o /dev/null -w '%{http_code}' "$url" || true) == "$want" ]] && return 0
    sleep 0.1
  done
  die "$url did not answer $want within 30 s"
}

# The answer must be exactly the expected one, fetched once with curl.
transport_check_body() { # label expected curl_arguments...
  local label=$1 want=$2 got
  shift 2
  got=$(curl -s --max-time 10 "$@") || die "no answer from $label"
  [[ $got == "$want" ]] || die "$label answered '$got', expected '$want'"
}

# "0-1" or "0,2" as "0 1" or "0 2".
cpu_list() { # cpu-list
  local part parts out=()
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}

# Clock ticks those cores spent busy (not idle, not waiting for I/O) and in
# all, from /proc/stat: "busy total".
core_ticks() { # cpu-list
  awk -v cpus=" $(cpu_list "$1") " '$1 ~ /^cpu[0-9]+$/ && index(cpus, " " substr($1, 4) " ") {
    busy += $2 + $3 + $4 + $7 + $8 + $9; total += $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
    END { print busy, total }' /proc/stat
}

# Runs a command that records one shape row (shape_wrk, tls_handshake_row,
# h2_row) and adds to its note how busy the cores were meanwhile, whatever ran
# on them: a load generator whose core is saturated measures itself, not the
# server. Each name=cpu-list becomes "name cpu-list: N%", a _ in the name a space.
with_core_use() { # "name=cpu-list ..." command...
  local specs=$1 spec name rows="$WORK/row.tsv" before=() after note="" i=0
  shift
  for spec in $specs; do before+=("$(core_ticks "${spec#*=}")"); done
  rm -f "$rows"
  SHAPE_ROWS=$rows "$@"
  for spec in $specs; do
    after=$(core_ticks "${spec#*=}")
    name=${spec%%=*}
    note+="${note:+, }${name//_/ } ${spec#*=}: $(awk -v b="${before[i]}" -v a="$after" 'BEGIN {
      split(b, x, " "); split(a, y, " "); t = y[2] - x[2]
      printf "%.0f%%", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }')"
    i=$((i + 1))
  done
  awk -v extra="; busy: $note" 'BEGIN { FS = OFS = "\t" } { $8 = $8 extra; print }' "$rows" >>"$SHAPE_ROWS"
}

# === tls ===

# A self-signed certificate for 127.0.0.1 and localhost, new each run; both
# servers present it, curl and the sign-in check it, wrk and h2load do not.
# Marked as no CA (req -x509 makes a CA certificate by default, which rustls'
# client, in the sign-in, refuses as a server's).
tls_certificate() { # kind
  local kind=$1 args
  case $kind in
    ecdsa) args=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) args=(-newkey rsa:2048) ;;
    *) die "no key type $kind" ;;
  esac
  openssl req -x509 "${args[@]}" -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$WORK/tls-$kind.key" -out "$WORK/tls-$kind.crt" 2>"$WORK/tls-$kind.openssl.err" ||
    die "openssl could not make the $kind certificate: $(cat "$WORK/tls-$kind.openssl.err")"
}

# What an OpenSSL 3 client with its defaults (wrk's: the same library, nothing
# set) negotiates with a server, from one `openssl s_client` handshake.
tls_negotiated() { # port
  local out
  out=$(timeout 10 openssl s_client -connect "127.0.0.1:$1" -brief </dev/null 2>&1) ||
    die "openssl s_client could not connect to 127.0.0.1:$1: $out"
  printf '%s, %s, %s, %s signature' \
    "$(sed -n 's/^Protocol version: //p' <<<"$out")" "$(sed -n 's/^Ciphersuite: //p' <<<"$out")" \
    "$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out")" \
    "$(sed -n 's/^\(Peer \)\{0,1\}[Ss]ignature type: //p' <<<"$out")"
}

# For one key type, once: its certificate; a portcullis with it (the main one's
# configuration, so the same upstream, provider, secret and access log, on
# https) and a real sign-in there; an nginx proxy to the same upstream with the
# same certificate (HTTP/2 on too, for the h2 shape). Pinned like load.sh's.
tls_servers() { # kind
  local kind=$1 pport=${TLS_PORTCULLIS_PORT[$1]} nport=${TLS_NGINX_PORT[$1]} crt key cookie
  [[ -n ${TLS_COOKIE[$kind]:-} ]] && return
  tls_certificate "$kind"
  crt="$WORK/tls-$kind.crt" key="$WORK/tls-$kind.key"
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$pport\"|" \
    -e "s|^public_url = .*|public_url = \"https://127.0.0.1:$pport\"\ntls_cert = \"$crt\"\ntls_key = \"$key\"|" \
    "$WORK/portcullis.toml" >"$WORK/portcullis-tls-$kind.toml"
  taskset -c "$SERVER_CPU" "$ROOT/target/release/portcullis" run --config "$WORK/portcullis-tls-$kind.toml" \
    2>"$WORK/portcullis-tls-$kind.err" &
  PIDS+=($!)
  TLS_PORTCULLIS_PID[$kind]=$!
  transport_wait_for "$!" "$WORK/portcullis-tls-$kind.err" "https://127.0.0.1:$pport/oauth2/readyz" 200 \
    "CURL_CA_BUNDLE=$crt"
  # nginx 1.22 offers TLS only up to 1.2 unless told; rustls offers 1.2 and 1.3.
  start_nginx "tls-$kind" "$(transport_proxy "127.0.0.1:$nport ssl http2" "
    ssl_certificate $crt;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;")" "$(transport_access_log "tls-$kind")"
  CURL_CA_BUNDLE=$crt wait_for "https://127.0.0.1:$nport/" 200

  cookie=$(taskset -c "$CLIENT_CPU" "$ROOT/target/release/examples/bench_idp" cookie \
    "https://127.0.0.1:$pport" "$crt") || die "could not sign in to portcullis over TLS ($kind)"
  # Over https the session cookie is `__Host-_portcullis` (README, Sessions).
  [[ $cookie == __Host-_portcullis=* ]] || die "unexpected session cookie over TLS: ${cookie%%=*}"
  TLS_COOKIE[$kind]=$cookie
  tls_target portcullis "$kind"
  transport_check_body "portcullis over TLS ($kind)" "$TLS_BODY" --cacert "$crt" -H "Cookie: $cookie" "$TLS_URL"
  tls_target nginx "$kind"
  transport_check_body "nginx over TLS ($kind)" "$TLS_BODY" --cacert "$crt" -H "Cookie: $cookie" "$TLS_URL"
  TLS_NEGOTIATED[portcullis-$kind]=$(tls_negotiated "$pport")
  TLS_NEGOTIATED[nginx-$kind]=$(tls_negotiated "$nport")
  log "TLS ($kind) with OpenSSL's defaults: portcullis ${TLS_NEGOTIATED[portcullis-$kind]};" \
    "nginx ${TLS_NEGOTIATED[nginx-$kind]}"
}

# The URL, server pids and expected body of portcullis or nginx over TLS with
# one key type, in TLS_URL, TLS_PIDS and TLS_BODY. Both are sent the same
# Cookie header; portcullis strips its cookie and forwards the user, nginx
# forwards the cookie, but the upstream's $cookie__portcullis does not match
# the name `__Host-_portcullis`, so its answer through nginx says "cookie=no".
tls_target() { # portcullis|nginx kind
  case $1 in
    portcullis)
      TLS_URL="https://127.0.0.1:${TLS_PORTCULLIS_PORT[$2]}/" TLS_PIDS=${TLS_PORTCULLIS_PID[$2]}
      TLS_BODY=$(upstream_body "$SIGNED_IN_USER" no)
      ;;
    nginx)
      TLS_URL="https://127.0.0.1:${TLS_NGINX_PORT[$2]}/" TLS_PIDS=$(nginx_pids "tls-$2")
      TLS_BODY=$(upstream_body "" no)
      ;;
  esac
}

# bench/shapes/full_handshake.c, built once: see there why wrk needs it.
full_handshake_shim() {
  FULL_HANDSHAKE_SO="$WORK/full_handshake.so"
  [[ -e $FULL_HANDSHAKE_SO ]] && return
  cc -O2 -shared -fPIC -o "$FULL_HANDSHAKE_SO" "$ROOT/bench/shapes/full_handshake.c" -ldl ||
    die "could not build bench/shapes/full_handshake.c (needs a C compiler)"
}

# wrk with a new TLS connection and a full handshake for every request: check.lua
# adds `Connection: close` (the server closes after answering, wrk reconnects),
# and full_handshake.so stops wrk's OpenSSL from offering the previous session.
# Fails unless every answer is right, every answered request had a full
# handshake of its own, and none resumed. p50/p99 are "-": wrk starts a
# request's clock after its handshake.
tls_handshake_row() { # label pids note url body cookie
  local label=$1 pids=$2 note=$3 url=$4 body=$5 cookie=$6 report="$WORK/handshakes.txt"
  local before after out result full resumed requests
  full_handshake_shim
  rm -f "$report"
  before=$(cpu_ticks $pids)
  out=$(timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
    env LD_PRELOAD="$FULL_HANDSHAKE_SO" FULL_HANDSHAKE_REPORT="$report" \
    wrk -t1 -c"${SHAPE_CONNECTIONS:-$CONNECTIONS}" -d"${DURATION}s" -s "$ROOT/bench/check.lua" "$url" \
    -- 200 "$body" "$cookie" "Connection: close") || die "wrk failed against $label"
  after=$(cpu_ticks $pids)
  result=$(check_result "$label" "$out")
  [[ -s $report ]] || die "wrk counted no handshakes against $label (was full_handshake.so loaded?)"
  full=$(field full "$(cat "$report")") resumed=$(field resumed "$(cat "$report")")
  requests=$(field requests "$result")
  ((resumed == 0 && full >= requests)) ||
    die "$label: $full full and $resumed resumed handshakes for $requests requests"
  shape_row "$TLS_SECTION" "$label" "$requests" "$(field duration_us "$result")" - - $((after - before)) \
    "$note; $full full handshakes, 0 resumed"
}

shape_tls() {
  local kind server
  tls_servers ecdsa
  tls_servers rsa
  # Keep-alive with one key type: the key signs in the handshake only.
  for server in portcullis nginx; do
    tls_target "$server" ecdsa
    with_core_use "$PINNED_CORES" shape_wrk "$TLS_SECTION" "$server, keep-alive (${TLS_KEY_NAME[ecdsa]})" \
      "$TLS_PIDS" "${TLS_NEGOTIATED[$server-ecdsa]}" "$TLS_URL" 200 "$TLS_BODY" "${TLS_COOKIE[ecdsa]}"
  done
  for kind in ecdsa rsa; do
    for server in portcullis nginx; do
      tls_target "$server" "$kind"
      with_core_use "$PINNED_CORES" tls_handshake_row \
        "$server, full handshake per request (${TLS_KEY_NAME[$kind]})" "$TLS_PIDS" \
        "${TLS_NEGOTIATED[$server-$kind]}" "$TLS_URL" "$TLS_BODY" "${TLS_COOKIE[$kind]}"
    done
  done
}

# === h2 ===

# One h2load run of DURATION s: H2_CLIENTS connections, H2_STREAMS concurrent
# streams on each, every request logged (--log-file: start, status, µs until
# the response ended). h2load reads no bodies (h2_check_bodies did, once):
# fails unless it spoke the protocol expected, counted no failure, error or
# timeout and only 2xx, and every logged response is a 200. p50/p99 come from
# that log; requests and duration from h2load's "done" and "finished in".
h2_row() { # label pids protocol url cookie
  local label=$1 pids=$2 protocol=$3 url=$4 cookie=$5 log="$WORK/h2load.log"
  local out before after finished requests answered succeeded ok_2xx bad latencies tls
  rm -f "$log"
  before=$(cpu_ticks $pids)
  out=$(timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" \
    -D "$DURATION" --log-file "$log" -H "cookie: $cookie" "$url" 2>&1) || die "h2load failed against $label: $out"
  after=$(cpu_ticks $pids)
  grep -qx "Application protocol: $protocol" <<<"$out" || die "h2load did not speak $protocol to $label: $out"
  finished=$(sed -n 's/^finished in \([0-9.]*\)s,.*/\1/p' <<<"$out")
  requests=$(grep '^requests: ' <<<"$out") || die "h2load printed no request counts for $label: $out"
  answered=$(sed -n 's/.* \([0-9]*\) done,.*/\1/p' <<<"$requests")
  succeeded=$(sed -n 's/.* \([0-9]*\) succeeded,.*/\1/p' <<<"$requests")
  ok_2xx=$(sed -n 's/^status codes: \([0-9]*\) 2xx, 0 3xx, 0 4xx, 0 5xx$/\1/p' <<<"$out")
  # (The 2xx count may include a response that ended after the duration.)
  [[ -n $finished && -n $answered && -n $ok_2xx && $answered -gt 0 && $succeeded == "$answered" &&
    $ok_2xx -ge $answered ]] && grep -q ' 0 failed, 0 errored, 0 timeout$' <<<"$requests" ||
    die "wrong answers or errors from $label: $(grep -E '^(requests|status codes):' <<<"$out")"
  bad=$(awk -F'\t' '$2 != 200' "$log" | wc -l)
  ((bad == 0)) ||
    die "$label: $bad requests in h2load's log were not 200, e.g. $(awk -F'\t' '$2 != 200' "$log" | head -n1)"
  latencies=$(cut -f3 "$log" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit 1; print v[int((NR - 1) * 0.50) + 1], v[int((NR - 1) * 0.99) + 1] }') ||
    die "h2load logged no requests for $label"
  tls=$(sed -n 's/^TLS Protocol: //p; s/^Cipher: //p; s/^Server Temp Key: \([^ ]*\).*/\1/p' <<<"$out" |
    paste -sd, | sed 's/,/, /g')
  shape_row "$H2_SECTION" "$label" "$answered" "$(awk -v s="$finished" 'BEGIN { printf "%d", s * 1e6 }')" \
    ${latencies% *} ${latencies#* } $((after - before)) \
    "$protocol${tls:+ ($tls)}; $(wc -l <"$log") requests logged, all 200"
}

# wait_for with HTTP/2 prior knowledge: an h2c-only nginx port does not answer HTTP/1.1.
h2c_wait_for() { # url
  local i
  for i in $(seq 1 300); do
    [[ $(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]] && return 0
    sleep 0.1
  done
  die "$1 did not answer 200 over h2c within 30 s"
}

# Each target's body once with curl over HTTP/2, and that curl spoke HTTP/2.
h2_check_bodies() {
  local crt=$WORK/tls-ecdsa.crt server
  for server in portcullis nginx; do
    tls_target "$server" ecdsa
    transport_check_body "$server, h2 over TLS" "$TLS_BODY"$'\n'2 --http2 --cacert "$crt" \
      -w '\n%{http_version}' -H "Cookie: ${TLS_COOKIE[ecdsa]}" "$TLS_URL"
  done
  transport_check_body "portcullis, h2c" "$(expected_body portcullis)"$'\n'2 --http2-prior-knowledge \
    -w '\n%{http_version}' -H "Cookie: $SESSION_COOKIE" "$(url_of portcullis)"
  transport_check_body "nginx, h2c" "$(expected_body nginx)"$'\n'2 --http2-prior-knowledge \
    -w '\n%{http_version}' -H "Cookie: $SESSION_COOKIE" "http://127.0.0.1:$H2C_NGINX_PORT/"
}

shape_h2() {
  local server
  tls_servers ecdsa
  # nginx with cleartext HTTP/2 (prior knowledge; nginx has no h2c upgrade).
  # portcullis needs no other listener: without TLS it serves HTTP/1.1 and
  # prior-knowledge HTTP/2 on the same port (hyper-util's auto connection).
  start_nginx h2c "$(transport_proxy "127.0.0.1:$H2C_NGINX_PORT http2")" "$(transport_access_log h2c)"
  h2c_wait_for "http://127.0.0.1:$H2C_NGINX_PORT/"
  h2_check_bodies
  for server in portcullis nginx; do
    tls_target "$server" ecdsa
    with_core_use "$PINNED_CORES" h2_row "$server, TLS + ALPN h2 (${TLS_KEY_NAME[ecdsa]})" "$TLS_PIDS" h2 \
      "$TLS_URL" "${TLS_COOKIE[ecdsa]}"
  done
  with_core_use "$PINNED_CORES" h2_row "portcullis, h2c (prior knowledge)" "$PORTCULLIS_PID" h2c \
    "$(url_of portcullis)" "$SESSION_COOKIE"
  with_core_use "$PINNED_CORES" h2_row "nginx, h2c (prior knowledge)" "$(nginx_pids h2c)" h2c \
    "http://127.0.0.1:$H2C_NGINX_PORT/" "$SESSION_COOKIE"
}

# === scaling ===

# A process's threads by name: "1 access-log, 1 portcullis, 2 tokio-rt-worker".
thread_names() { # pid
  cat /proc/"$1"/task/*/comm | sort | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }'
}

# Whether every thread of a process may run on every core.
all_threads_unpinned() { # pid
  ! grep -h '^Cpus_allowed_list:' /proc/"$1"/task/*/status | grep -qv ":[[:space:]]*$ALL_CPUS\$"
}

# A portcullis like the main one (its configuration, so the same session cookie
# opens it) with THREADS threads serving connections, in SCALING_PID and
# SCALING_THREADS (its threads by name). main.rs sizes the runtime by
# std::thread::available_parallelism, which follows the CPU affinity: one
# core, a current-thread runtime; more, one worker per core. It sets the count
# itself, so tokio's TOKIO_WORKER_THREADS is never read. So the one-thread
# instance starts on one core, then all its threads are allowed on every core.
scaling_portcullis() { # threads port
  local threads=$1 port=$2 pid names
  sed -e "s/127.0.0.1:$PORTCULLIS_PORT/127.0.0.1:$port/g" "$WORK/portcullis.toml" \
    >"$WORK/portcullis-$threads-threads.toml"
  taskset -c "$([[ $threads == 1 ]] && echo "$SERVER_CPU" || echo "$ALL_CPUS")" \
    "$ROOT/target/release/portcullis" run --config "$WORK/portcullis-$threads-threads.toml" \
    2>"$WORK/portcullis-$threads-threads.err" &
  pid=$!
  PIDS+=("$pid")
  transport_wait_for "$pid" "$WORK/portcullis-$threads-threads.err" "http://127.0.0.1:$port/oauth2/readyz" 200
  taskset -a -p -c "$ALL_CPUS" "$pid" >/dev/null
  all_threads_unpinned "$pid" ||
    die "portcullis ($threads threads) is still pinned: $(grep -h Cpus_allowed_list /proc/"$pid"/task/*/status)"
  # Runtime workers are named tokio-rt-worker; a current-thread runtime has none
  # (the main thread runs it, as it runs the accept loop in both). Blocking-pool
  # threads would share the name; none has been needed by now.
  names=$(thread_names "$pid")
  case $threads in
    1) grep -q 'tokio-rt-worker' <<<"$names" && die "portcullis on one core has runtime workers: $names" ;;
    *) grep -q "\b$threads tokio-rt-worker\b" <<<"$names" || die "portcullis on $threads cores has threads $names" ;;
  esac
  log "portcullis with $threads thread(s): pid $pid, threads $names"
  SCALING_PID=$pid SCALING_THREADS=$names
}

# One scaling row: wrk on every core too, and how busy the cores were.
scaling_wrk() { # label pids note url target
  CLIENT_CPU=$ALL_CPUS with_core_use "cores=$ALL_CPUS" shape_wrk "$SCALING_SECTION" "$1" "$2" "$3" "$4" 200 \
    "$(expected_body "$5")" "$SESSION_COOKIE"
}

shape_scaling() {
  local upstream_pids pid threads port
  # The shared upstream may use every core too, for the length of this shape.
  upstream_pids=$(nginx_pids upstream)
  for pid in $upstream_pids; do taskset -a -p -c "$ALL_CPUS" "$pid" >/dev/null; done
  for threads in 1 2; do
    port=${SCALING_PORTCULLIS_PORT[$threads]}
    scaling_portcullis "$threads" "$port"
    transport_check_body "portcullis, $threads threads" "$(expected_body portcullis)" \
      -H "Cookie: $SESSION_COOKIE" "http://127.0.0.1:$port/"
    if [[ $threads == 1 ]]; then
      scaling_wrk "portcullis, 1 thread (current-thread runtime)" "$SCALING_PID" "threads: $SCALING_THREADS" \
        "http://127.0.0.1:$port/" portcullis
      # The floor's runtime is current-thread only (examples/hyper_floor.rs): no 2-thread row.
      taskset -c "$ALL_CPUS" "$ROOT/target/release/hyper_floor" \
        "127.0.0.1:$SCALING_FLOOR_PORT" "127.0.0.1:$UPSTREAM_PORT" 2>"$WORK/hyper_floor-unpinned.err" &
      pid=$!
      PIDS+=("$pid")
      transport_wait_for "$pid" "$WORK/hyper_floor-unpinned.err" "http://127.0.0.1:$SCALING_FLOOR_PORT/" 200
      transport_check_body "hyper floor, unpinned" "$(expected_body hyper-floor)" \
        -H "Cookie: $SESSION_COOKIE" "http://127.0.0.1:$SCALING_FLOOR_PORT/"
      scaling_wrk "hyper floor, 1 thread (current-thread runtime)" "$pid" "threads: $(thread_names "$pid")" \
        "http://127.0.0.1:$SCALING_FLOOR_PORT/" hyper-floor
    else
      scaling_wrk "portcullis, $threads threads (multi-thread runtime)" "$SCALING_PID" \
        "threads: $SCALING_THREADS" "http://127.0.0.1:$port/" portcullis
    fi
    port=${SCALING_NGINX_PORT[$threads]}
    start_nginx "scaling-$threads" "$(transport_proxy "127.0.0.1:$port")" \
      "$(transport_access_log "scaling-$threads")" "$threads" "$ALL_CPUS"
    wait_for "http://127.0.0.1:$port/" 200
    transport_check_body "nginx, $threads workers" "$(expected_body nginx)" \
      -H "Cookie: $SESSION_COOKIE" "http://127.0.0.1:$port/"
    pid=$(cat "$WORK/nginx-scaling-$threads.pid")
    (($(pgrep -c -P "$pid") == threads)) || die "nginx scaling-$threads has $(pgrep -c -P "$pid") workers"
    scaling_wrk "nginx, worker_processes $threads" "$(nginx_pids "scaling-$threads")" \
      "master and $threads worker$([[ $threads == 1 ]] || echo s)" "http://127.0.0.1:$port/" nginx
  done
  for pid in $upstream_pids; do taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null; done
}
