#!/usr/bin/env bash
# A Realm cluster on this machine (docs/cluster.md): PostgreSQL, three
# clustered nats-servers and N realm nodes, all on loopback with free ports,
# everything under DIR.
#
#   scripts/cluster.sh up DIR N         start it all, wait until every node sees
#                                       every other, write DIR/cluster.json
#   scripts/cluster.sh start-node DIR ID  start a stopped node again (its former
#                                       ports and data dir)
#   scripts/cluster.sh stop-node DIR ID   stop one node (SIGTERM)
#   scripts/cluster.sh down DIR         stop all of it (DIR stays, for its logs)
#
# REALM_BIN picks the realm binary (default: build/realm, else build/asan/realm);
# REALM_ARGS adds flags to every node (e.g. "--auth").
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${REALM_BIN:-}"
if [ -z "$BIN" ]; then
  for b in "$ROOT/build/realm" "$ROOT/build/asan/realm"; do [ -x "$b" ] && BIN="$b" && break; done
fi
PG_BIN="${REALM_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server) # Debian: /usr/sbin
PY=/usr/bin/python3

die() { echo "cluster: $*" >&2; exit 1; }

# 1 while pid runs (a zombie nobody reaped does not).
alive() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}

# PostgreSQL refuses root: as root, its commands run as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_ports() { # N free loopback ports, one per line
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits (up to $2 s) until the command in $1 succeeds.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

json_get() { # json_get FILE PYTHON-EXPR (d is the document)
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

start_node() { # start_node DIR ID CLIENT CONTROL RUNTIME METRICS
  local dir=$1 id=$2 nd="$1/nodes/$2"
  mkdir -p "$nd"
  local db nats
  db=$(cat "$dir/db.url")
  nats=$(cat "$dir/nats.urls")
  # shellcheck disable=SC2086
  nohup "$BIN" serve --port "$3" --control-port "$4" --runtime-port "$5" --metrics-port "$6" \
    --data-dir "$nd/data" --db "$db" --nats "$nats" --node-id "$id" --event-lease-ms 30000 \
    ${REALM_ARGS:-} \
    >"$nd/stdout" 2>"$nd/log" </dev/null &
  echo $! >"$nd/pid"
  wait_for "grep -q '^listening metrics' '$nd/stdout'" 60 ||
    die "node $id did not start (see $nd/log): $(tail -3 "$nd/log")"
}

cmd_up() {
  local dir=$1 n=$2
  [ -x "$BIN" ] || die "no realm binary (make build, or set REALM_BIN)"
  [ "$n" -ge 1 ] 2>/dev/null || die "N must be a number >= 1"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/cluster.json" ] && die "$dir already holds a cluster (down it, or use another DIR)"

  # PostgreSQL.
  local pgport
  pgport=$(free_ports 1)
  # PostgreSQL's files go in DIR/pg, or, when its user cannot reach DIR (a
  # private temp dir), in a directory of its own under $REALM_PG_TMP or /tmp.
  local pg="$dir/pg"
  mkdir -p "$pg"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$pg" && chmod 0700 "$pg"
    if ! runuser -u postgres -- test -w "$pg"; then
      rmdir "$pg"
      pg=$(mktemp -d "${REALM_PG_TMP:-/tmp}/realm-cluster-pg-XXXXXX")
      chown postgres: "$pg"
    fi
  fi
  echo "$pg" >"$dir/pg.dir"
  as_pg "$PG_BIN/initdb" -D "$pg/data" -U realm -A trust -E UTF8 --locale=C \
    --no-instructions >"$dir/pg.init.log" 2>&1 || die "initdb failed (see $dir/pg.init.log)"
  as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -o \
    "-p $pgport -k $pg -c listen_addresses=127.0.0.1" start >/dev/null ||
    die "PostgreSQL did not start (see $pg/postgres.log)"
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$pgport" -U realm realm
  echo "postgresql://realm@127.0.0.1:$pgport/realm" >"$dir/db.url"

  # Three nats-servers, clustered (each routes to the others).
  local ports=() i
  mapfile -t ports < <(free_ports 6)
  local routes="nats://127.0.0.1:${ports[3]},nats://127.0.0.1:${ports[4]},nats://127.0.0.1:${ports[5]}"
  local urls=""
  for i in 0 1 2; do
    mkdir -p "$dir/nats/$((i + 1))"
    nohup "$NATS_SERVER" -a 127.0.0.1 -p "${ports[$i]}" --name "nats$((i + 1))" \
      --cluster_name realm --cluster "nats://127.0.0.1:${ports[$((i + 3))]}" --routes "$routes" \
      >"$dir/nats/$((i + 1))/log" 2>&1 </dev/null &
    echo $! >"$dir/nats/$((i + 1))/pid"
    urls="$urls${urls:+,}nats://127.0.0.1:${ports[$i]}"
  done
  for i in 1 2 3; do
    wait_for "grep -q 'Server is ready' '$dir/nats/$i/log'" 30 || die "nats-server $i did not start"
  done
  echo "$urls" >"$dir/nats.urls"

  # The nodes.
  local id p=()
  for i in $(seq 1 "$n"); do
    id="n$i"
    mapfile -t p < <(free_ports 4)
    mkdir -p "$dir/nodes/$id"
    echo "${p[*]}" >"$dir/nodes/$id/ports"
    start_node "$dir" "$id" "${p[0]}" "${p[1]}" "${p[2]}" "${p[3]}"
  done
  write_json "$dir"
  wait_healthy "$dir" "$n"
  echo "cluster: $n node(s) up; $dir/cluster.json"
}

write_json() {
  local dir=$1
  "$PY" - "$dir" <<'EOF'
import json, os, sys
d = sys.argv[1]
nodes = []
for nid in sorted(os.listdir(os.path.join(d, "nodes")), key=lambda s: int(s[1:]) if s[1:].isdigit() else 0):
    nd = os.path.join(d, "nodes", nid)
    c, ctl, rt, m = open(os.path.join(nd, "ports")).read().split()
    pid = int(open(os.path.join(nd, "pid")).read())
    nodes.append({"id": nid, "pid": pid, "client": f"ws://127.0.0.1:{c}/",
                  "control": f"http://127.0.0.1:{ctl}", "metrics": f"http://127.0.0.1:{m}",
                  "runtime": f"http://127.0.0.1:{rt}", "data_dir": os.path.join(nd, "data"),
                  "log": os.path.join(nd, "log")})
nats = []
for i in (1, 2, 3):
    pid = int(open(os.path.join(d, "nats", str(i), "pid")).read())
    nats.append({"pid": pid})
urls = open(os.path.join(d, "nats.urls")).read().strip().split(",")
for n, u in zip(nats, urls):
    n["url"] = u
doc = {"nodes": nodes, "nats": nats, "db": open(os.path.join(d, "db.url")).read().strip(),
       "postgres": {"data": os.path.join(open(os.path.join(d, "pg.dir")).read().strip(), "data")}}
tmp = os.path.join(d, "cluster.json.tmp")
json.dump(doc, open(tmp, "w"), indent=1)
os.replace(tmp, os.path.join(d, "cluster.json"))
EOF
}

# Every running node's metrics count $2 nodes.
wait_healthy() {
  local dir=$1 want=$2 nd m
  for nd in "$dir"/nodes/*; do
    alive "$(cat "$nd/pid")" || continue
    m=$(cut -d' ' -f4 "$nd/ports")
    wait_for "curl -sf http://127.0.0.1:$m/metrics | grep -qE '^realm_cluster_nodes(\{[^}]*\})? $want\$'" 30 ||
      die "node $(basename "$nd") does not see $want nodes (see $nd/log)"
  done
}

running_nodes() {
  local dir=$1 c=0 nd
  for nd in "$dir"/nodes/*; do alive "$(cat "$nd/pid")" && c=$((c + 1)); done
  echo $c
}

cmd_start_node() {
  local dir=$1 id=$2 nd="$1/nodes/$2"
  [ -f "$nd/ports" ] || die "no node $id in $dir"
  alive "$(cat "$nd/pid")" && die "node $id is running"
  local p
  read -r -a p <"$nd/ports"
  start_node "$dir" "$id" "${p[0]}" "${p[1]}" "${p[2]}" "${p[3]}"
  write_json "$dir"
  wait_healthy "$dir" "$(running_nodes "$dir")"
  echo "cluster: node $id up"
}

stop_pid() { # stop_pid PIDFILE SIGNAL
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill -"$2" "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop_node() {
  local nd="$1/nodes/$2"
  [ -f "$nd/pid" ] || die "no node $2 in $1"
  stop_pid "$nd/pid" TERM
}

cmd_down() {
  local dir=$1 nd i
  [ -d "$dir" ] || die "no cluster in $dir"
  for nd in "$dir"/nodes/*; do [ -f "$nd/pid" ] && stop_pid "$nd/pid" TERM; done
  for i in 1 2 3; do [ -f "$dir/nats/$i/pid" ] && stop_pid "$dir/nats/$i/pid" TERM; done
  local pg
  pg=$(cat "$dir/pg.dir" 2>/dev/null || echo "$dir/pg")
  [ -d "$pg/data" ] && as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -m fast stop >/dev/null 2>&1 || true
  case "$pg" in "$dir"/*) ;; *) rm -rf "$pg" ;; esac # a directory of its own outside DIR
  rm -f "$dir/cluster.json"
  echo "cluster: down ($dir kept)"
}

case "${1:-}" in
  up) [ $# -eq 3 ] || die "usage: $0 up DIR N"; cmd_up "$2" "$3" ;;
  start-node) [ $# -eq 3 ] || die "usage: $0 start-node DIR ID"; cmd_start_node "$2" "$3" ;;
  stop-node) [ $# -eq 3 ] || die "usage: $0 stop-node DIR ID"; cmd_stop_node "$2" "$3" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; cmd_down "$2" ;;
  *) die "usage: $0 up DIR N | start-node DIR ID | stop-node DIR ID | down DIR" ;;
esac
