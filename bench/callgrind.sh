#!/usr/bin/env bash
# Instructions portcullis spends per signed-in GET, counted by callgrind:
# repeatable to a few hundred instructions whatever else the machine does, so
# an A/B of two builds needs one run each (wrk's timings on a shared machine
# drift by more than most changes).
#
#   bench/callgrind.sh target/release/portcullis /tmp/portcullis-before
#
# For each binary: a run with 200 requests and one with 2,200 on one
# keep-alive connection; the difference over 2,000 is the per-request count,
# start-up and sign-in cancelled out. Needs valgrind, python3, curl, and the
# release build of examples/bench_idp (cargo build --release --examples).
# Build the binary on its own (cargo build --release --bin portcullis): built
# in one command with an example, it gets the dev-dependencies' features too
# (tokio's test-util, which takes a mutex at every clock read).
# ACCESS_LOG=false measures with `[log] access = false` (default: true, the
# default config); either way stderr is /dev/null.
# AUTH says what signs each request in: `cookie` (default, the session cookie),
# `bearer` (one access token, `Authorization: Bearer`, every request: its
# verdict is cached) or `bearer-each` (a different token each request, so each
# costs one signature check against the cached key).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_PORT=${BASE_PORT:-19080}
ACCESS_LOG=${ACCESS_LOG:-true}
AUTH=${AUTH:-cookie}
case $AUTH in cookie | bearer | bearer-each) ;; *) echo "AUTH: cookie, bearer or bearer-each" >&2; exit 64 ;; esac
(($# >= 1)) || { echo "usage: bench/callgrind.sh BINARY [BINARY...]" >&2; exit 64; }
WORK=$(mktemp -d /tmp/portcullis-callgrind.XXXXXX)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

UPSTREAM_PORT=$((BASE_PORT + 1)) IDP_PORT=$((BASE_PORT + 2))
python3 - "$UPSTREAM_PORT" <<'PY' &
import http.server, sys
class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Upstream).serve_forever()
PY
PIDS+=($!)
TOKENS=()
[[ $AUTH == cookie ]] || TOKENS=(tokens 2200 "$WORK/tokens")
"$ROOT/target/release/examples/bench_idp" serve "$IDP_PORT" "${TOKENS[@]}" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  [[ $AUTH == cookie || -s $WORK/tokens ]] && break
  sleep 0.2
done
sleep 1
cat >"$WORK/portcullis.toml" <<EOT
[server]
listen = "127.0.0.1:$BASE_PORT"
public_url = "http://127.0.0.1:$BASE_PORT"
[upstream]
url = "http://127.0.0.1:$UPSTREAM_PORT"
[session]
secret = "callgrind-only-0123456789abcdef0123456789"
[providers.demo]
issuer = "http://127.0.0.1:$IDP_PORT"
client_id = "portcullis-demo"
client_secret = "demo-secret"
[log]
access = $ACCESS_LOG
[access]
bearer_tokens = $([[ $AUTH == cookie ]] && echo false || echo true)
EOT

# Total instructions of one run of $1 serving $2 signed-in requests.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$WORK/out" "$1" run --config "$WORK/portcullis.toml" 2>/dev/null &
  local pid=$!
  for _ in $(seq 1 240); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$BASE_PORT/oauth2/readyz") == 200 ]] && break
    sleep 0.5
  done
  local cookie
  cookie=$("$ROOT/target/release/examples/bench_idp" cookie "http://127.0.0.1:$BASE_PORT")
  python3 - "$BASE_PORT" "$cookie" "$2" "$AUTH" "$WORK/tokens" <<'PY'
import http.client, sys
port, cookie, n, auth, tokens = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
if auth != "cookie":
    tokens = open(tokens).read().split()
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    if auth == "cookie":
        headers = {"Cookie": cookie, "Accept": "text/html"}
    else:
        token = tokens[i if auth == "bearer-each" else 0]
        headers = {"Authorization": "Bearer " + token, "Accept": "application/json"}
    conn.request("GET", "/", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200 and body == b"hello", (resp.status, body)
PY
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p' "$WORK/out"
}

for binary in "$@"; do
  few=$(count "$binary" 200)
  many=$(count "$binary" 2200)
  echo "$binary: $(((many - few) / 2000)) instructions per signed-in GET (access log: $ACCESS_LOG, auth: $AUTH)"
done
