#!/usr/bin/env bash
# Every symbol the core library exports carries the realm_ prefix: an internal
# helper is static, or named realm_<module>_... (docs/architecture.md).
# Usage: scripts/check-symbols.sh LIBRARY.a
set -euo pipefail
lib=${1:?usage: check-symbols.sh LIBRARY.a}
bad=$(nm -g --defined-only "$lib" 2>/dev/null | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
  grep -vE '^(realm_|__)' | sort -u || true)
if [ -n "$bad" ]; then
  echo "symbols: exported without the realm_ prefix:" $bad
  exit 1
fi
echo "symbols: ok"
