# Sourced by scripts/test, scripts/mutants and benches/load.sh (bash,
# set -euo pipefail):
# start_cluster, await_cluster and stop_cluster for the tests' Redis Cluster.
# Needs redis-server, redis-cli and python3. The caller traps stop_cluster
# on EXIT, so the nodes are torn down whatever happens.

# One Redis Cluster (3 masters, 3 replicas) on free loopback ports, shared by
# the cluster cases of the store and fleet suites (they pass its seeds
# through TS_TEST_REDIS_CLUSTER); the failover test makes its own. Test
# variables never start with TOKENSMITH_: the servers the tests spawn inherit
# the environment and refuse an unknown TOKENSMITH_* setting.
CLUSTER_DIR=""
CLUSTER_PIDS=()
stop_cluster() {
  for pid in "${CLUSTER_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$CLUSTER_DIR" ]; then rm -rf "$CLUSTER_DIR"; fi
}
# A node also listens on its port + 10000 (the cluster bus): both must be
# free, and the bus port must exist (no ephemeral port above 55535).
free_port() {
  python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p > 55535: continue
    b = socket.socket()
    try: b.bind(("127.0.0.1", p + 10000))
    except OSError: continue
    print(p); break'
}
# Started first and awaited just before the tests: it settles (slots agreed,
# replicas synced) while the lints build.
CLUSTER_PORTS=()
start_cluster() {
  CLUSTER_DIR=$(mktemp -d)
  local ports=() seeds=() addrs=()
  for _ in 1 2 3 4 5 6; do
    local port
    port=$(free_port)
    mkdir -p "$CLUSTER_DIR/$port"
    # A replica syncs at once, not after the 5 s a master waits for company.
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --repl-diskless-sync-delay 0 \
      --dir "$CLUSTER_DIR/$port" --logfile "$CLUSTER_DIR/$port/redis.log" >/dev/null 2>&1 &
    CLUSTER_PIDS+=("$!")
    # Not this shell's job any more: the teardown's kill -9 prints nothing.
    disown "$!"
    ports+=("$port"); addrs+=("127.0.0.1:$port"); seeds+=("redis://127.0.0.1:$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 100); do
      [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  CLUSTER_PORTS=("${ports[@]}")
  TS_TEST_REDIS_CLUSTER=$(IFS=,; echo "${seeds[*]}")
  export TS_TEST_REDIS_CLUSTER
}
await_cluster() {
  local port info
  for port in "${CLUSTER_PORTS[@]}"; do
    for _ in $(seq 300); do
      redis-cli -p "$port" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' && break
      sleep 0.1
    done
    if ! redis-cli -p "$port" CLUSTER INFO | grep -q '^cluster_state:ok'; then
      echo "error: the test Redis Cluster did not reach cluster_state:ok (node $port)" >&2
      exit 1
    fi
  done
  # cluster_state:ok comes before the replicas' first sync; WAIT needs it.
  for port in "${CLUSTER_PORTS[@]}"; do
    for _ in $(seq 300); do
      info=$(redis-cli -p "$port" INFO replication 2>/dev/null)
      if ! grep -q '^role:master' <<<"$info" || grep -q 'state=online' <<<"$info"; then break; fi
      sleep 0.1
    done
  done
}
