#!/usr/bin/env bash
# Starts three chime agents on loopback as one cluster and stops them all on
# Ctrl-C. Data goes to ./cluster-data/n{1,2,3}; HTTP APIs on 8710, 8720, 8730.
set -euo pipefail
bin=${1:-bin/chime}
# Nodes of several refuse to start without a strong shared key: unless
# CHIME_CLUSTER_KEY is set, one is made on the first run and kept (0600) in
# cluster-data/cluster-key, so a restart finds the same cluster again.
key=${CHIME_CLUSTER_KEY:-}
if [ -z "$key" ]; then
  mkdir -p cluster-data
  if [ ! -s cluster-data/cluster-key ]; then
    (umask 077; "$bin" keygen > cluster-data/cluster-key)
  fi
  key=$(cat cluster-data/cluster-key)
fi
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "stopping cluster..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait
}
trap cleanup INT TERM EXIT
for i in 1 2 3; do
  base=$((8700 + i * 10))
  args=(agent --node-id "n$i" --data-dir "cluster-data/n$i"
        --http-addr "127.0.0.1:$base" --raft-addr "127.0.0.1:$((base + 1))" --gossip-addr "127.0.0.1:$((base + 2))"
        --bootstrap-expect 3 --cluster-key "$key" --allow-private-targets)
  [ "$i" -gt 1 ] && args+=(--join 127.0.0.1:8712)
  # Process substitution keeps $! the agent's pid, not the prefixing sed's.
  "$bin" "${args[@]}" > >(sed -u "s/^/[n$i] /") 2>&1 &
  pids+=($!)
done
echo "cluster starting: http://127.0.0.1:8710 http://127.0.0.1:8720 http://127.0.0.1:8730 (Ctrl-C stops it)"
echo "API token: the first start logs 'root API token generated' with token=...; set CHIME_ROOT_TOKEN to choose it"
wait
