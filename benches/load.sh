#!/usr/bin/env bash
# The HTTP load bench: tokensmith against references measured in the same run,
# on this machine. Prints one line per measurement; see benches/README.md.
#   benches/load.sh                 # DUR=10 CONN=32 by default
#   JWKS_ROUNDS=3 JWKS_ONLY=1 CONN=8 benches/load.sh   # the JWKS lines alone, alternated
#   OAUTH_ONLY=1 benches/load.sh    # issue 11's lines alone: /v1/tokens RS256, the raw
#                                   # sign rate, /oauth2/token (RS256, opaque on memory
#                                   # and Redis), introspection of opaque on Redis
#   INTROSPECT_ONLY=1 INTROSPECT_ROUNDS=5 benches/load.sh   # introspection of opaque
#                                   # tokens on Redis alone, at RATE/s, N times, each
#                                   # after the same requests answered by nginx (the floor)
#   PIN=1 ...                       # the load generator on the last core, every server
#                                   # (tokensmith, Redis, nginx) on the others: on a small
#                                   # machine they no longer take each other's CPU
#   CLUSTER=1 benches/load.sh       # the Redis Cluster lines alone: verify + consume at
#                                   # RATE/s open loop on 3 masters + 3 replicas,
#                                   # redis_wait_replicas = 0 and 1; memory per mark
# Needs wrk, nginx (nginx-light) and redis-server from Debian; installs them
# when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
CONN=${CONN:-32}
RATE=${RATE:-1000}

for pkg in wrk:wrk nginx:nginx-light redis-server:redis-server; do
  if ! command -v "${pkg%%:*}" >/dev/null 2>&1 && ! [ -x "/usr/sbin/${pkg%%:*}" ]; then
    [ "$(id -u)" = 0 ] || { echo "error: missing_tool: install ${pkg#*:}" >&2; exit 1; }
    apt-get install -y -qq "${pkg#*:}" >/dev/null
  fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# RELEASE=<dir> NO_BUILD=1 runs binaries built before (tokensmith and
# examples/{loadgen,sign_rate} under <dir>) instead of building them.
RELEASE=${RELEASE:-$PWD/target/release}
# PIN=1: servers on cores 0..n-2, the load generators on core n-1.
SRV=() GEN=()
if [ "${PIN:-0}" = 1 ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "error: PIN=1 needs at least 2 cores" >&2; exit 1; }
  SRV=(taskset -c "0-$((last - 1))") GEN=(taskset -c "$last")
fi
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --quiet --bin tokensmith --example sign_rate --example loadgen
BIN=$RELEASE/tokensmith
W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT [LOG]
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "error: port $1 never opened" >&2; [ -n "${2:-}" ] && cat "$2" >&2; exit 1
}

export API_KEY="sk_bench_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
HASH="sha256:$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)"
# OAuth 2.0 (issue 11): a second client, bench-op, with opaque tokens.
export API_KEY2="sk_bench_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
HASH2="sha256:$(printf %s "$API_KEY2" | sha256sum | cut -d' ' -f1)"

# start_instance NAME ALG BACKEND [REDIS_URL] [STORE_TOML] -> sets ${NAME}_PORT
start_instance() {
  local name=$1 alg=$2 backend=$3 redis=${4:-redis://127.0.0.1:6379} store_extra=${5:-} p
  p=$(port)
  mkdir -p "$W/$name"
  cat > "$W/$name/tokensmith.toml" <<TOML
issuer = "http://127.0.0.1:$p"
listen = "127.0.0.1:$p"
[keys]
dir = "$W/$name/keys"
algorithm = "$alg"
[store]
backend = "$backend"
redis_url = "$redis"
capacity = 10000000
$store_extra
[[clients]]
id = "bench"
audience = "chatbot"
api_keys = ["$HASH"]
scopes = ["read:orders"]
max_ttl = "30m"
[[clients]]
id = "bench-op"
audience = "chatbot-op"
api_keys = ["$HASH2"]
scopes = ["read:orders"]
max_ttl = "30m"
token_format = "opaque"
TOML
  # serve makes no keys (only `serve --dev` does): make them first.
  (cd "$W/$name" && "$BIN" keys init >/dev/null 2>"$W/$name/log") || { cat "$W/$name/log" >&2; exit 1; }
  # exec: $! is then the server itself, which cleanup kills (a subshell
  # killed in its place left the server running after the bench).
  (cd "$W/$name" && TOKENSMITH_LOG=warn exec "${SRV[@]}" "$BIN" serve >/dev/null 2>>"$W/$name/log") &
  PIDS+=($!)
  wait_port "$p" "$W/$name/log"
  printf -v "${name}_PORT" '%s' "$p"
}

wrk_line() { # LABEL wrk-args...
  local label=$1; shift
  local out; out=$(wrk -t1 -c"$CONN" -d"${DUR}s" --latency "$@")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-34s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$label" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

# route_buckets PORT ROUTE: the cumulative counts of ROUTE's latency
# histogram in /metrics, "le=count" a line.
route_buckets() {
  curl -s "http://127.0.0.1:$1/metrics" |
    sed -n "s/^tokensmith_request_duration_seconds_bucket{route=\"${2//\//\\/}\",le=\"\([^\"]*\)\"} \([0-9]*\)$/\1=\2/p"
}
# server_quantiles BEFORE AFTER: the buckets that hold p50, p99 and p99.9
# of the requests between two route_buckets readings.
server_quantiles() {
  python3 - "$1" "$2" <<'PY'
import sys
def parse(t): return [(l.split("=")[0], int(l.split("=")[1])) for l in t.split() if "=" in l]
b, a = dict(parse(sys.argv[1])), parse(sys.argv[2])
d = [(le, n - b.get(le, 0)) for le, n in a]
total = d[-1][1] if d else 0
def q(p):
    for le, n in d:
        if n >= p * total:
            return "<= %s ms" % ("inf" if le == "+Inf" else "%g" % (float(le) * 1000))
    return "?"
print("%d requests: p50 %s, p99 %s, p99.9 %s" % (total, q(0.50), q(0.99), q(0.999)))
PY
}

# collect_tokens INSTANCE COUNT: COUNT distinct tokens of INSTANCE in $W/INSTANCE.tokens.
collect_tokens() {
  local p_var="${1}_PORT"
  export TOKENS_OUT="$W/$1.tokens"
  : > "$TOKENS_OUT"
  while [ "$(wc -l < "$TOKENS_OUT")" -lt "$2" ]; do
    wrk -t1 -c8 -d3s -s benches/load/collect.lua "http://127.0.0.1:${!p_var}/v1/tokens" >/dev/null
  done
}

if [ "${CLUSTER:-0}" = 1 ]; then
  # A Redis Cluster of 3 masters and 3 replicas on free loopback ports, the
  # one scripts/test starts (scripts/lib/redis-cluster.sh), stopped on exit.
  # shellcheck source=scripts/lib/redis-cluster.sh
  . scripts/lib/redis-cluster.sh
  trap 'stop_cluster; cleanup' EXIT
  start_cluster
  await_cluster
  CPORTS=("${CLUSTER_PORTS[@]}") SEEDS=()
  for cp in "${CPORTS[@]}"; do SEEDS+=("\"redis://127.0.0.1:$cp\""); done
  SEEDLIST=$(IFS=,; echo "${SEEDS[*]}")
  # The two instances share the cluster, each in its own namespace (issuer).
  start_instance cl0 RS256 redis "" "redis_cluster = [$SEEDLIST]
redis_wait_replicas = 0"
  start_instance cl1 RS256 redis "" "redis_cluster = [$SEEDLIST]
redis_wait_replicas = 1"
  NEED=$((RATE * DUR))
  collect_tokens cl0 "$NEED"
  collect_tokens cl1 "$NEED"
  echo "== Redis Cluster (3 masters + 3 replicas), open loop at ${RATE}/s for ${DUR}s (latency from scheduled start)"
  echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  LG="${GEN[*]} $RELEASE/examples/loadgen"
  printf '%-34s ' "verify + consume  cluster wait=0"; $LG "http://127.0.0.1:$cl0_PORT/v1/verify" "$API_KEY" "$W/cl0.tokens" "$RATE" "$DUR" true
  printf '%-34s ' "verify + consume  cluster wait=1"; $LG "http://127.0.0.1:$cl1_PORT/v1/verify" "$API_KEY" "$W/cl1.tokens" "$RATE" "$DUR" true
  echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "== memory per live mark (MEMORY USAGE of a mark key, 22-character jti)"
  for cp in "${CPORTS[@]}"; do
    redis-cli -p "$cp" INFO replication | grep -q '^role:master' || continue
    # A mark is `ts:{<bucket>}<digest>`: no `:` after the tag.
    key=$(redis-cli -p "$cp" --scan --pattern 'ts:{[0-9]*}[^:]*' | head -1 || true)
    [ -n "$key" ] && printf '   %s  %s bytes  (%s keys on this master)\n' "$key" \
      "$(redis-cli -p "$cp" MEMORY USAGE "$key")" "$(redis-cli -p "$cp" DBSIZE)"
  done
  exit 0
fi

RPORT=$(port)
"${SRV[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >/dev/null &
PIDS+=($!)
wait_port "$RPORT"

start_instance rs RS256 memory
start_instance es ES256 memory
start_instance rd RS256 redis "redis://127.0.0.1:$RPORT"

# nginx serving the same JWKS bytes as a static file.
mkdir -p "$W/www/.well-known"
curl -s "http://127.0.0.1:$rs_PORT/.well-known/jwks.json" > "$W/www/.well-known/jwks.json"
NPORT=$(port)
cat > "$W/nginx.conf" <<NGINX
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  client_body_temp_path $W; proxy_temp_path $W; fastcgi_temp_path $W; uwsgi_temp_path $W; scgi_temp_path $W;
  server {
    listen 127.0.0.1:$NPORT; root $W/www; etag on; add_header Cache-Control "public, max-age=1800";
    # The open-loop reference: the machine's and the generator's own tail.
    location = /ping { return 200 '{"active":false}'; }
  }
}
NGINX
"${SRV[@]}" "$NGINX" -c "$W/nginx.conf" -p "$W"
wait_port "$NPORT"

echo "== $(nproc) cores, wrk -t1 -c$CONN -d${DUR}s; all servers on 127.0.0.1"
# JWKS_ROUNDS > 1 alternates nginx and tokensmith, so both see the same
# machine speed on a shared machine; JWKS_ONLY=1 stops after these lines.
if [ "${INTROSPECT_ONLY:-0}" != 1 ]; then
for _ in $(seq 1 "${JWKS_ROUNDS:-1}"); do
  wrk_line "GET jwks.json   nginx (static)" "http://127.0.0.1:$NPORT/.well-known/jwks.json"
  wrk_line "GET jwks.json   tokensmith" "http://127.0.0.1:$rs_PORT/.well-known/jwks.json"
done
[ "${JWKS_ONLY:-0}" = 1 ] && exit 0
wrk_line "POST /v1/tokens RS256" -s benches/load/tokens.lua "http://127.0.0.1:$rs_PORT/v1/tokens"
[ "${OAUTH_ONLY:-0}" = 1 ] || wrk_line "POST /v1/tokens ES256" -s benches/load/tokens.lua "http://127.0.0.1:$es_PORT/v1/tokens"
"$RELEASE/examples/sign_rate" 2 "$DUR"
# OAuth 2.0 (issue 11): the token endpoint, JWT and opaque.
BASIC1=$(printf '%s' "bench:$API_KEY" | base64 -w0)
BASIC2=$(printf '%s' "bench-op:$API_KEY2" | base64 -w0)
OAUTH_BASIC=$BASIC1 wrk_line "POST /oauth2/token cc RS256" -s benches/load/oauth_token.lua "http://127.0.0.1:$rs_PORT/oauth2/token"
OAUTH_BASIC=$BASIC2 wrk_line "POST /oauth2/token cc opaque mem" -s benches/load/oauth_token.lua "http://127.0.0.1:$rs_PORT/oauth2/token"
OAUTH_BASIC=$BASIC2 wrk_line "POST /oauth2/token cc opaque redis" -s benches/load/oauth_token.lua "http://127.0.0.1:$rd_PORT/oauth2/token"
fi

LG="${GEN[*]} $RELEASE/examples/loadgen"
if [ "${OAUTH_ONLY:-0}" != 1 ] && [ "${INTROSPECT_ONLY:-0}" != 1 ]; then
TOKEN=$(curl -s "http://127.0.0.1:$rs_PORT/v1/tokens" -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
  -d '{"sub":"user-1","scopes":["read:orders"],"ttl":"30m"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])')
export TOKEN
wrk_line "POST /v1/verify (RS256)" -s benches/load/verify.lua "http://127.0.0.1:$rs_PORT/v1/verify"

# Distinct tokens for the consume runs: one per request.
NEED=$((RATE * DUR))
for inst in rs rd; do collect_tokens "$inst" "$NEED"; done

echo "== open loop at ${RATE}/s for ${DUR}s (latency from scheduled start)"
printf '%-34s ' "verify            memory"; $LG "http://127.0.0.1:$rs_PORT/v1/verify" "$API_KEY" "$W/rs.tokens" "$RATE" "$DUR" false
printf '%-34s ' "verify + consume  memory"; $LG "http://127.0.0.1:$rs_PORT/v1/verify" "$API_KEY" "$W/rs.tokens" "$RATE" "$DUR" true
printf '%-34s ' "verify            redis"; $LG "http://127.0.0.1:$rd_PORT/v1/verify" "$API_KEY" "$W/rd.tokens" "$RATE" "$DUR" false
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
printf '%-34s ' "verify + consume  redis"; $LG "http://127.0.0.1:$rd_PORT/v1/verify" "$API_KEY" "$W/rd.tokens" "$RATE" "$DUR" true
echo "== redis commands per consume ($NEED consumes):"
redis-cli -p "$RPORT" INFO commandstats | grep -E '^cmdstat_(set|mget|evalsha|eval|get):' | sed 's/^/   /'
fi
# OAuth 2.0 (issue 11): introspection of opaque tokens, on Redis.
for _ in $(seq 1 200); do
  curl -s "http://127.0.0.1:$rd_PORT/oauth2/token" -u "bench-op:$API_KEY2" -d grant_type=client_credentials |
    grep -o '"access_token":"[^"]*"' | cut -d'"' -f4
done > "$W/op.tokens"
for _ in $(seq 1 "${INTROSPECT_ROUNDS:-1}"); do
  # The floor, in the same run: nginx answering the same requests with a
  # fixed body. Its p99 is the tail the machine and the generator add.
  printf '%-34s ' "reference: nginx fixed reply"
  LOADGEN_INTROSPECT=bench-op $LG "http://127.0.0.1:$NPORT/ping" "$API_KEY2" "$W/op.tokens" "$RATE" "$DUR" false
  before=$(route_buckets "$rd_PORT" /oauth2/introspect)
  printf '%-34s ' "introspect opaque redis"
  LOADGEN_INTROSPECT=bench-op $LG "http://127.0.0.1:$rd_PORT/oauth2/introspect" "$API_KEY2" "$W/op.tokens" "$RATE" "$DUR" false
  # The server's own view: its latency histogram over this round (from
  # the request read to the response written; no queue, no generator).
  printf '%-34s %s\n' "  in the server" \
    "$(server_quantiles "$before" "$(route_buckets "$rd_PORT" /oauth2/introspect)")"
done
[ "${INTROSPECT_ONLY:-0}" = 1 ] && exit 0
echo "== redis ceiling"
redis-benchmark -p "$RPORT" -t set -n 200000 -c 32 -q | tr '\r' '\n' | grep -v '^$' | tail -1
