# shellcheck shell=bash
# Where llama.cpp's pieces are, for a shell working on generate:
#   . scripts/llama_env.sh
# REALM_LLAMA_LIB_DIR  the prebuilt libraries (libllama, libggml*, libggml-cpu-*)
# REALM_LLAMA_SRC      the llama.cpp tree (headers, gguf-py, vocab GGUFs)
# REALM_TEST_MODEL     the tiny test model (make test-model)
# PYTHONPATH           gains gguf-py, so scripts/make_test_model.py and
#                      `python3 -m gguf.scripts.gguf_dump MODEL` work
# scripts/setup.sh puts the first two in place; CMakeLists.txt uses the same
# defaults (its cache variables REALM_LLAMA_LIB_DIR, REALM_LLAMA_INCLUDE_DIRS).
_realm_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export REALM_LLAMA_LIB_DIR="$_realm_root/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
export REALM_LLAMA_SRC="$_realm_root/build/llama.cpp"
export REALM_TEST_MODEL="$_realm_root/build/models/tiny-test.gguf"
case ":${PYTHONPATH:-}:" in
  *":$REALM_LLAMA_SRC/gguf-py:"*) ;;
  *) export PYTHONPATH="$REALM_LLAMA_SRC/gguf-py${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
unset _realm_root
