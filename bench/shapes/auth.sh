# Deployed shapes of issue #14 (sourced by bench/load.sh): how a signed-in
# request costs with the Redis session store (cached, and read from Redis), with
# bearer tokens (one repeated, a new one each request), and behind nginx's
# auth_request (forward-auth). Every answer's exact body is checked, as in
# load.sh: the upstream's body names the X-Forwarded-User that reached it.
#
# Environment: REDIS_SESSIONS (1500 × DURATION): sessions signed in at another
# replica for the uncached Redis row; BEARER_TOKENS (2000 × DURATION): tokens
# minted for the new-token-each-request row. Each is used once; a row whose
# values run out stops early (its duration is what they lasted, in its note).
# Ports BASE_PORT+30 .. +34.

SHAPE_NAMES+=(redis bearer forward-auth)

AUTH_IDP_PORT=$((BASE_PORT + 30))
AUTH_BEARER_PORT=$((BASE_PORT + 31))
AUTH_REPLICA_PORT=$((BASE_PORT + 32))
AUTH_FA_NGINX_PORT=$((BASE_PORT + 33))
AUTH_FA_PORTCULLIS_PORT=$((BASE_PORT + 34))

# Runs wrk with a check script against a URL for DURATION seconds, as shape_wrk
# does, but leaves the RESULT line in AUTH_RESULT and the servers' CPU ticks in
# AUTH_TICKS instead of recording a row: the Redis rows' notes need what Redis
# saw during the run. check_tokens.lua gets one more argument, a file it
# creates when its values run out: wrk is then ended with SIGINT (it reports at
# once) rather than left idle for the rest of DURATION.
auth_wrk() { # label "pids" script url script_args...
  local label=$1 pids=$2 script=$3 url=$4 before after wrk_pid done_file="$WORK/values-done"
  shift 4
  [[ $script == check_tokens.lua ]] && set -- "$@" "$done_file"
  rm -f "$done_file"
  before=$(cpu_ticks $pids)
  timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"${SHAPE_CONNECTIONS:-$CONNECTIONS}" \
    -d"${DURATION}s" -s "$ROOT/bench/$script" "$url" -- "$@" >"$WORK/auth-wrk.out" &
  wrk_pid=$!
  PIDS+=("$wrk_pid") # stopped on exit should the run fail before the wait
  while kill -0 "$wrk_pid" 2>/dev/null; do
    # timeout passes SIGINT on to wrk.
    [[ -e $done_file ]] && { kill -INT "$wrk_pid" 2>/dev/null || true; break; }
    sleep 0.05
  done
  wait "$wrk_pid" || die "wrk failed against $label"
  after=$(cpu_ticks $pids)
  forget "$wrk_pid"
  AUTH_RESULT=$(check_result "$label" "$(cat "$WORK/auth-wrk.out")")
  AUTH_TICKS=$((after - before))
}

# Records auth_wrk's run as a row.
auth_row() { # section label note
  shape_row "$1" "$2" "$(field requests "$AUTH_RESULT")" "$(field duration_us "$AUTH_RESULT")" \
    "$(field p50_us "$AUTH_RESULT")" "$(field p99_us "$AUTH_RESULT")" "$AUTH_TICKS" "$3"
}

# For a check_tokens.lua run: how many values it had, and whether they ran out
# (the run then stopped before DURATION).
auth_values_note() {
  local used values
  used=$(field used "$AUTH_RESULT") values=$(field values "$AUTH_RESULT")
  ((used <= values)) || die "check_tokens.lua sent $used of $values values"
  if ((used == values)); then
    printf 'all %s used, in %s s' "$values" \
      "$(awk -v us="$(field duration_us "$AUTH_RESULT")" 'BEGIN { printf "%.1f", us / 1e6 }')"
  else
    printf '%s of %s used' "$used" "$values"
  fi
}

# Commands Redis has executed (INFO commandstats): all but INFO (which is this
# function's own), and GETs (a session read) among them.
redis_calls() {
  redis-cli -p "$REDIS_PORT" INFO commandstats | awk -F'[:=,]' '
    /^cmdstat_/ && $1 != "cmdstat_info" { n += $3 }
    $1 == "cmdstat_get" { get += $3 }
    END { print n + 0, get + 0 }'
}

# Redis commands per request over a run, from redis_calls before and after:
# "all (GET: gets)". Per request sent: check_tokens.lua's count of values used
# when it ran (the answers in flight when it stopped were served, but not
# checked), else the answers checked.
per_request() { # "calls_before" "calls_after"
  local before=($1) after=($2) sent
  sent=$(field used "$AUTH_RESULT")
  [[ -n $sent ]] || sent=$(field requests "$AUTH_RESULT")
  awk -v n=$((after[0] - before[0])) -v get=$((after[1] - before[1])) -v r="$sent" \
    'BEGIN { printf "%.3f (GET: %.3f)", n / r, get / r }'
}

# Starts a portcullis with the given config; waits until it is ready.
auth_portcullis() { # name config port -> AUTH_PID
  taskset -c "$SERVER_CPU" "$ROOT/target/release/portcullis" run --config "$2" 2>"$WORK/$1.err" &
  PIDS+=($!)
  AUTH_PID=$!
  wait_for "http://127.0.0.1:$3/oauth2/readyz" 200
}

# === redis ===

# The Redis session store, signed in. Cached: load.sh's portcullis-redis with
# its one session, which it keeps opened in process (README "Sessions in
# Redis"; nothing configures that cache: 4 MiB, 30 s). Uncached: sessions that
# another replica (same Redis, secret and prefix) signed in, each sent once, so
# this instance has never cached any of them and reads each from Redis. CPU
# counts portcullis-redis and redis-server.
shape_redis() {
  local section="Redis session store (session.store = \"redis\")" pids="$PORTCULLIS_REDIS_PID $REDIS_PID"
  local body before after n=${REDIS_SESSIONS:-$((1500 * DURATION))}
  body=$(expected_body portcullis-redis)
  before=$(redis_calls)
  auth_wrk "portcullis-redis cached" "$pids" check.lua "$(url_of portcullis-redis)" \
    200 "$body" "$REDIS_SESSION_COOKIE"
  after=$(redis_calls)
  auth_row "$section" "portcullis-redis, session cached (one cookie)" \
    "Redis commands per request: $(per_request "$before" "$after")"

  # The other replica: the same config on another port.
  sed -e "s/127.0.0.1:$PORTCULLIS_REDIS_PORT/127.0.0.1:$AUTH_REPLICA_PORT/g" \
    "$WORK/portcullis-redis.toml" >"$WORK/portcullis-replica.toml"
  auth_portcullis portcullis-replica "$WORK/portcullis-replica.toml" "$AUTH_REPLICA_PORT"
  log "signing in $n sessions at the other replica"
  local started=$SECONDS
  timeout $((n / 100 + 60)) taskset -c "$CLIENT_CPU" "$ROOT/target/release/examples/bench_idp" \
    cookies "http://127.0.0.1:$AUTH_REPLICA_PORT" "$n" "$SIGN_IN_CONNS" >"$WORK/redis-cookies.txt" ||
    die "signing in $n sessions at the other replica failed"
  (($(sort -u "$WORK/redis-cookies.txt" | wc -l) == n)) || die "the replica's $n session cookies are not all different"
  log "signed in $n sessions in $((SECONDS - started)) s"
  before=$(redis_calls)
  auth_wrk "portcullis-redis uncached" "$pids" check_tokens.lua "$(url_of portcullis-redis)" \
    200 "$body" "$WORK/redis-cookies.txt" Cookie ""
  after=$(redis_calls)
  auth_row "$section" "portcullis-redis, session read from Redis (a new session each request)" \
    "Redis commands per request: $(per_request "$before" "$after"); sessions signed in at another replica, each sent once ($(auth_values_note))"
}

# === bearer ===

# API clients with `Authorization: Bearer <JWT>` ([access] bearer_tokens): a
# portcullis for them against its own demo provider, which mints the tokens at
# start (bench_idp serve ... tokens). One token repeated: keys and verdict
# cached, an API client's steady state. A new token each request: one RS256
# signature check each, keys cached. nginx cannot validate a JWT: no nginx row.
shape_bearer() {
  local section="Bearer tokens ([access] bearer_tokens = true)" body token n=${BEARER_TOKENS:-$((2000 * DURATION))}
  log "minting $n access tokens"
  local started=$SECONDS
  # Not pinned: minting (RSA signing, about 1 ms a token) uses both cores before
  # anything is measured; the provider is idle afterwards (its JWKS cached).
  "$ROOT/target/release/examples/bench_idp" serve "$AUTH_IDP_PORT" tokens "$n" "$WORK/tokens.txt" \
    >"$WORK/idp-bearer.out" 2>"$WORK/idp-bearer.err" &
  PIDS+=($!)
  local i
  for i in $(seq 1 $((n / 50 + 600))); do
    [[ -e $WORK/tokens.txt ]] && break
    sleep 0.1
  done
  [[ -e $WORK/tokens.txt ]] || die "bench_idp minted no tokens"
  (($(sort -u "$WORK/tokens.txt" | wc -l) == n)) || die "the $n tokens are not all different"
  log "minted $n tokens in $((SECONDS - started)) s"
  sed -e "s/127.0.0.1:$PORTCULLIS_PORT/127.0.0.1:$AUTH_BEARER_PORT/g" \
    -e "s/127.0.0.1:$IDP_PORT/127.0.0.1:$AUTH_IDP_PORT/g" "$WORK/portcullis.toml" >"$WORK/portcullis-bearer.toml"
  printf '[access]\nbearer_tokens = true\n' >>"$WORK/portcullis-bearer.toml"
  auth_portcullis portcullis-bearer "$WORK/portcullis-bearer.toml" "$AUTH_BEARER_PORT"
  local pid=$AUTH_PID url="http://127.0.0.1:$AUTH_BEARER_PORT/"
  # No cookie reaches the upstream; the token's `sub` is the identity.
  body=$(upstream_body "$SIGNED_IN_USER" no)
  token=$(head -n1 "$WORK/tokens.txt")
  shape_wrk "$section" "portcullis, one token repeated (verdict cached)" "$pid" \
    "JWKS and verdict cached; nginx cannot validate a JWT: no nginx row" "$url" 200 "$body" "" "Authorization: Bearer $token"
  # The token above is cached now: the next run starts from the second.
  sed -i 1d "$WORK/tokens.txt"
  auth_wrk "portcullis bearer, a new token each request" "$pid" check_tokens.lua "$url" \
    200 "$body" "$WORK/tokens.txt" Authorization "Bearer "
  auth_row "$section" "portcullis, a new token each request (RS256 check each)" \
    "tokens minted before the run, each sent once ($(auth_values_note)); nginx cannot validate a JWT"
}

# === forward-auth ===

# nginx auth_request → portcullis /oauth2/auth, as examples/nginx-forward-auth.conf
# (identity headers copied with auth_request_set), with keep-alive pools to
# portcullis and the app as load.sh's nginx has. The same request (session
# cookie, browser Accept) goes to it, to load.sh's nginx proxy_pass alone, and
# to load.sh's signed-in portcullis; the forward-auth row's CPU counts nginx and
# portcullis. Its portcullis is load.sh's config (same secret, so the same
# cookie opens) with nginx as public_url and trusted proxy.
shape_forward_auth() {
  local section="Forward-auth (nginx auth_request → portcullis /oauth2/auth)" access_log="access_log off;"
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$AUTH_FA_PORTCULLIS_PORT\"|" \
    -e "s|^public_url = .*|public_url = \"http://127.0.0.1:$AUTH_FA_NGINX_PORT\"\ntrusted_proxies = [\"127.0.0.1/32\"]|" \
    "$WORK/portcullis.toml" >"$WORK/portcullis-forward-auth.toml"
  auth_portcullis portcullis-forward-auth "$WORK/portcullis-forward-auth.toml" "$AUTH_FA_PORTCULLIS_PORT"
  local pid=$AUTH_PID
  if [[ $ACCESS_LOG == 1 ]]; then
    access_log="access_log $WORK/forward-auth/access.log combined buffer=32k flush=1s;"
  fi
  start_nginx forward-auth "
  upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  upstream portcullis { server 127.0.0.1:$AUTH_FA_PORTCULLIS_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$AUTH_FA_NGINX_PORT backlog=4096;
    location /oauth2/ {
      proxy_pass http://portcullis;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
    location = /oauth2/auth {
      internal;
      proxy_pass http://portcullis;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_pass_request_body off;
      proxy_set_header Content-Length \"\";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Uri \"\";
      proxy_set_header X-Forwarded-Method \"\";
    }
    location / {
      auth_request /oauth2/auth;
      error_page 401 = @sign_in;
      auth_request_set \$user   \$upstream_http_x_forwarded_user;
      auth_request_set \$email  \$upstream_http_x_forwarded_email;
      auth_request_set \$groups \$upstream_http_x_forwarded_groups;
      auth_request_set \$cookie \$upstream_http_set_cookie;
      add_header Set-Cookie \$cookie;
      proxy_set_header X-Forwarded-User   \$user;
      proxy_set_header X-Forwarded-Email  \$email;
      proxy_set_header X-Forwarded-Groups \$groups;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
    location @sign_in {
      if (\$http_accept !~* \"text/html\") {
        add_header WWW-Authenticate 'Bearer realm=\"portcullis\"' always;
        return 401;
      }
      return 302 /oauth2/sign_in?rd=\$request_uri;
    }
  }" "$access_log"
  local url="http://127.0.0.1:$AUTH_FA_NGINX_PORT/"
  wait_for "$url" 401 # no session, not a browser: nginx answers 401
  # The app gets nginx's request: the client's cookie still on it, and the
  # identity portcullis answered.
  local body got
  body=$(upstream_body "$SIGNED_IN_USER" yes)
  got=$(curl -s -H "Cookie: $SESSION_COOKIE" -H "Accept: text/html" "$url") || die "no answer from nginx forward-auth"
  [[ $got == "$body" ]] || die "nginx forward-auth answered '$got', expected '$body'"
  shape_wrk "$section" "nginx auth_request → portcullis" "$(nginx_pids forward-auth) $pid" \
    "CPU: nginx and portcullis" "$url" 200 "$body" "$SESSION_COOKIE"
  shape_wrk "$section" "nginx proxy_pass alone (no authentication)" "$(server_pids nginx)" \
    "reference: load.sh's nginx" "$(url_of nginx)" 200 "$(expected_body nginx)" "$SESSION_COOKIE"
  shape_wrk "$section" "portcullis proxy, signed in" "$(server_pids portcullis)" \
    "reference: load.sh's portcullis" "$(url_of portcullis)" 200 "$(expected_body portcullis)" "$SESSION_COOKIE"
}
