#!/usr/bin/env bash
# Waits, for at most SECONDS, until the nodes whose HTTP APIs are on the given
# local ports form one cluster: every one answers GET /v1/ready with 200, all
# name the same leader in GET /v1/cluster/status, and that status counts every
# one of them as a voter. `make up` runs it; the image has no shell or curl,
# so readiness is checked from the host. Usage: wait-ready.sh SECONDS PORT...
set -uo pipefail
timeout=${1:?usage: wait-ready.sh SECONDS PORT...}
shift
ports=("$@")
deadline=$((SECONDS + timeout))

check() {
  local port code status leader leaders=() voters
  problem=""
  for port in "${ports[@]}"; do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/v1/ready")
    if [ "$code" != 200 ]; then
      problem="127.0.0.1:$port/v1/ready: $(curl -s -m 2 "http://127.0.0.1:$port/v1/ready" || echo 'no answer')"
      return 1
    fi
    status=$(curl -s -m 2 "http://127.0.0.1:$port/v1/cluster/status")
    leader=$(sed -n 's/.*"leader":{"id":"\([^"]*\)".*/\1/p' <<<"$status")
    leaders+=("${leader:-none}")
  done
  if [ "$(printf '%s\n' "${leaders[@]}" | sort -u | wc -l)" -ne 1 ] || [ "${leaders[0]}" = none ]; then
    problem="the nodes do not agree on a leader: ${leaders[*]}"
    return 1
  fi
  voters=$(grep -o '"raft":"\(voter\|leader\)"' <<<"$status" | wc -l)
  if [ "$voters" -lt "${#ports[@]}" ]; then
    problem="only $voters of ${#ports[@]} nodes are voters yet"
    return 1
  fi
}

until check; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "not ready after ${timeout}s: $problem" >&2
    exit 1
  fi
  sleep 1
done
