#!/usr/bin/env bash
# Checks that src/ includes only run one way (docs/architecture.md):
#   base <- net <- {http, ws} <- api
#   base <- {proto, metrics, config, queue} ; metrics <- dispatch <- api
#   base <- pkg <- registry ; base <- sandbox <- exec ; pkg <- cli
#   db (SQLite opening) <- {registry, queue, auth}
#   {config, dispatch, registry, queue, exec, model} <- invoke <- api
# Domain code (dispatch, invoke, registry, sandbox, exec, queue) never
# includes http/, ws/ or api/: it exposes callbacks that api/ adapts.
set -euo pipefail
cd "$(dirname "$0")/../src"

allowed() {
  case "$1" in
    base) echo "base" ;;
    net) echo "base net" ;;
    http) echo "base net http" ;;
    ws) echo "base net ws" ;;
    proto) echo "base proto" ;;
    metrics) echo "base metrics" ;;
    config) echo "base config" ;;
    dispatch) echo "base metrics dispatch" ;;
    pkg) echo "base pkg" ;;
    registry) echo "base db pkg registry" ;;
    sandbox) echo "base sandbox" ;;
    exec) echo "base sandbox exec" ;;
    queue) echo "base db queue" ;;
    db) echo "db" ;;
    model) echo "base model" ;;
    llm) echo "base llm" ;;
    auth) echo "base db auth" ;;
    cli) echo "base pkg auth cli" ;;
    invoke) echo "base config metrics dispatch pkg registry queue exec model invoke" ;;
    api) echo "*" ;;
    *) echo "" ;;
  esac
}

bad=0
for f in $(find . -name '*.[ch]' | sed 's|^\./||' | sort); do
  dir=${f%%/*}
  [ "$dir" = "$f" ] && continue # main.c
  ok=$(allowed "$dir")
  if [ -z "$ok" ]; then
    echo "layers: $f: folder '$dir' has no rule in scripts/check-layers.sh"; bad=1; continue
  fi
  [ "$ok" = "*" ] && continue
  for inc in $(grep -oE '^#include "[a-z_]+/' "$f" | sed -E 's/#include "([a-z_]+)\//\1/' | sort -u); do
    case " $ok " in *" $inc "*) ;; *) echo "layers: $f includes $inc/ (allowed: $ok)"; bad=1 ;; esac
  done
done
[ "$bad" = 0 ] && echo "layers: ok"
exit "$bad"
