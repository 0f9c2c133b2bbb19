#!/usr/bin/env bash
# A two-node Ray cluster simulated on this machine builds a network's accuracy artifact twice:
# from a driver here (`RAY_ADDRESS=... python -m cli.build_profiles --backend ray`) and as a Ray
# job (`ray job submit --working-dir . -- <venv python> -m cli.build_profiles ...`, backend auto).
# A serial build of the same plan follows, and all three must agree exactly: the same artifact
# document (but for its wall time) and the same cache rows. The artifact is also compared with
# the committed one. Shows which node ran how many tasks.
#
#   bash scripts/two_node_ray.sh [network]        # default lenet5 (full plan, ~4 min on 2 cores)
#
# Needs `make setup-ray`. Everything stays on loopback: the head node is 127.0.0.2 and the worker
# node 127.0.0.3 (Ray rewrites "127.0.0.1" and "localhost" to the machine's outward address, but
# no other loopback address); separate temp dirs, token authentication (a fresh token in a private
# file, not ~/.ray/auth_token) and no usage statistics. Both nodes run with `ray start --block` and
# are stopped by their process ids on exit, whatever happens (never `ray stop`, which would stop
# every Ray process of this machine).
set -euo pipefail
cd "$(dirname "$0")/.."

NETWORK=${1:-lenet5}
ROOT=$PWD
PY=$ROOT/.venv/bin/python
RAY=$ROOT/.venv/bin/ray
[ -x "$RAY" ] || { echo "error: $RAY not found; install the optional extra with \`make setup-ray\`" >&2; exit 2; }
[ -f "workloads/profiles/$NETWORK.json" ] || { echo "error: no committed artifact workloads/profiles/$NETWORK.json" >&2; exit 2; }

WORK=$(mktemp -d /tmp/two_node_ray.XXXXXX)
HEAD_TMP=/tmp/ray_head_$$      # short: Ray's unix socket paths live under the temp dir
WORKER_TMP=/tmp/ray_worker_$$
NODE_START_TIMEOUT_S=90
NODE_STOP_TIMEOUT_S=30

export AIMC_NO_REEXEC=1 RAY_USAGE_STATS_ENABLED=0
JEMALLOC=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -n 1 || true)
if [ -n "$JEMALLOC" ]; then export LD_PRELOAD=$JEMALLOC; fi  # the project's allocator (common/runtime.py), nodes and driver alike
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$WORK/auth_token
(umask 077 && "$PY" -c "import secrets; print(secrets.token_hex(32))" > "$RAY_AUTH_TOKEN_PATH")

free_port() { "$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

NODE_PIDS=()
cleanup() {
    local status=$? pid deadline
    for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + NODE_STOP_TIMEOUT_S))
    for pid in "${NODE_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Anything a node started that outlived it (found by this run's temp dirs, stopped by id).
    for pid in $(pgrep -f -- "$HEAD_TMP|$WORKER_TMP" || true); do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 1
    local left
    left=$(pgrep -f -- "$HEAD_TMP|$WORKER_TMP" || true)
    [ -z "$left" ] && echo "both Ray nodes stopped" || echo "warning: Ray processes left: $left" >&2
    rm -rf "$WORK" "$HEAD_TMP" "$WORKER_TMP"
    exit $status
}
trap cleanup EXIT INT TERM

node_ports() {  # every port a node opens, chosen free on loopback (two nodes share one machine)
    echo --node-manager-port="$(free_port)" --object-manager-port="$(free_port)" \
        --dashboard-agent-listen-port="$(free_port)" --dashboard-agent-grpc-port="$(free_port)" \
        --metrics-export-port="$(free_port)" --runtime-env-agent-port="$(free_port)"
}

wait_for_cpus() {  # until the cluster has $1 CPUs
    local deadline=$((SECONDS + NODE_START_TIMEOUT_S))
    until "$PY" - "$ADDRESS" "$1" <<'EOF' 2>/dev/null
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
sys.exit(0 if ray.cluster_resources().get("CPU", 0) >= float(sys.argv[2]) else 1)
EOF
    do
        [ $SECONDS -lt $deadline ] || { echo "error: the cluster did not reach $1 CPUs; logs in $WORK" >&2; tail -n 20 "$WORK"/*.log >&2; exit 1; }
        sleep 2
    done
}

PORT=$(free_port)
ADDRESS=127.0.0.2:$PORT
DASHBOARD=127.0.0.1:$(free_port)  # where `ray job submit` talks to the cluster
echo "head node on $ADDRESS (temp dir $HEAD_TMP), token in $RAY_AUTH_TOKEN_PATH"
"$RAY" start --head --port="$PORT" --node-ip-address=127.0.0.2 --num-cpus=1 --temp-dir="$HEAD_TMP" \
    --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="${DASHBOARD#*:}" \
    --ray-client-server-port="$(free_port)" $(node_ports) --disable-usage-stats --block > "$WORK/head.log" 2>&1 &
NODE_PIDS+=($!)
wait_for_cpus 1
echo "worker node joins $ADDRESS (temp dir $WORKER_TMP)"
"$RAY" start --address="$ADDRESS" --node-ip-address=127.0.0.3 --num-cpus=1 --temp-dir="$WORKER_TMP" \
    $(node_ports) --disable-usage-stats --block > "$WORK/worker.log" 2>&1 &
NODE_PIDS+=($!)
wait_for_cpus 2
"$RAY" status --address="$ADDRESS" | sed -n '/Node status/,/Resources/p'

echo "building $NETWORK's artifact on the cluster (RAY_ADDRESS=$ADDRESS)"
START=$SECONDS
RAY_ADDRESS=$ADDRESS "$PY" -m cli.build_profiles --networks "$NETWORK" --backend ray \
    --directory "$WORK/profiles" --cache "$WORK/cache.sqlite"
echo "build took $((SECONDS - START)) s"

echo "the same build as a Ray job: the project uploaded as its working dir, the venv's python as entrypoint"
START=$SECONDS
"$RAY" job submit --address="http://$DASHBOARD" --working-dir=. -- \
    "$PY" -m cli.build_profiles --networks "$NETWORK" --directory "$WORK/job" --cache "$WORK/job.sqlite" \
    2>&1 | tee "$WORK/job.log" | grep -v "eval/s" || true
grep -q "backend=ray" "$WORK/job.log" || { echo "error: the job did not run on the Ray backend" >&2; exit 1; }
echo "job build took $((SECONDS - START)) s (upload included)"

echo "the same build serially, in this process only (no Ray), into its own folder and cache"
START=$SECONDS
"$PY" -m cli.build_profiles --networks "$NETWORK" --backend serial \
    --directory "$WORK/serial" --cache "$WORK/serial.sqlite"
echo "serial build took $((SECONDS - START)) s"

RAY_ADDRESS=$ADDRESS "$PY" - "$NETWORK" "$WORK" <<'EOF'
"""The cluster's artifact and cache rows against the serial build's, and the committed artifact."""
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import ray
from ray.util.state import list_tasks

from accuracy.profiles import PROFILE_DIR

name, work = sys.argv[1], Path(sys.argv[2])


def document(path: Path) -> tuple[dict, float]:
    data = json.loads(path.read_text())
    return data, data.pop("seconds")


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as raw:
        return raw.execute("SELECT key, kind, key_json, payload, checksum FROM results ORDER BY key").fetchall()


(cluster, cluster_s), (serial, serial_s) = document(work / "profiles" / f"{name}.json"), document(work / "serial" / f"{name}.json")
job, job_s = document(work / "job" / f"{name}.json")
assert cluster == serial, "the cluster's artifact differs from the serial build's"
assert job == serial, "the Ray job's artifact differs from the serial build's"
print(f"artifact: identical on the cluster, as a Ray job and serially (wall time {cluster_s} s, {job_s} s, "
      f"{serial_s} s)")
cluster_rows, job_rows, serial_rows = rows(work / "cache.sqlite"), rows(work / "job.sqlite"), rows(work / "serial.sqlite")
assert cluster_rows == serial_rows, "the cluster's cache rows differ from the serial build's"
assert job_rows == serial_rows, "the Ray job's cache rows differ from the serial build's"
print(f"cache rows: {len(cluster_rows)}, identical in all three (key, key JSON, payload, checksum)")

committed, _ = document(PROFILE_DIR / f"{name}.json")
t_built, t_committed = np.array(cluster["samples"].pop("t_s")), np.array(committed["samples"].pop("t_s"))
assert cluster == committed, "the artifact differs from the committed one beyond the samples' drift times"
ulps = np.abs(t_built - t_committed) / np.spacing(t_committed)
print(f"artifact vs the committed one: every accuracy, drop and mapping identical; {int((ulps > 0).sum())} of "
      f"{len(ulps)} sampled drift times differ by at most {ulps.max():.0f} ulp (numpy's exp on this CPU)")
assert ulps.max() <= 1

ray.init(logging_level="ERROR", log_to_driver=False)
nodes = {node["NodeID"]: f"{node['NodeManagerAddress']}" + (" (head)" if node["Resources"].get("node:__internal_head__") else "")
         for node in ray.nodes() if node["Alive"]}
tasks = list_tasks(filters=[("func_or_class_name", "=", "_run_chunk_in_ray")], limit=10_000, raise_on_missing_output=False)
per_node = Counter(nodes.get(task.node_id, task.node_id) for task in tasks if task.state == "FINISHED")
print(f"finished evaluation tasks per node (both Ray builds): {dict(per_node)}")
assert len(per_node) == 2, "both nodes should have run tasks"
EOF
echo "two-node Ray build: OK"
