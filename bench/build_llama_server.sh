#!/usr/bin/env bash
# llama.cpp's own llama-server and llama-batched-bench, built from the llama.cpp that the
# installed llama-cpp-python vendors (the same version the engine runs), for the benches'
# reference columns. Once, on a quiet machine: ~20 min on 2 cores, never beside a measurement.
#
#   bench/build_llama_server.sh            # -> ~/.cache/gsexplore/bin/llama-server
#   JOBS=4 bench/build_llama_server.sh     # parallel compile jobs (default: the cores)
#
# The benches find the binary there (or LLAMA_SERVER=/path/to/llama-server).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')
CACHE=${GSEXPLORE_CACHE:-$HOME/.cache/gsexplore}
SRC="$CACHE/src/llama_cpp_python-$VERSION"
BIN="$CACHE/bin"
JOBS=${JOBS:-$(nproc)}
if [ ! -d "$SRC/vendor/llama.cpp" ]; then
  mkdir -p "$CACHE/src"
  "$PY" -m pip download --no-binary :all: --no-deps -d "$CACHE/src" "llama-cpp-python==$VERSION"
  tar xzf "$CACHE/src/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE/src"
fi
# the web UI is left out (no download, no npm); flags otherwise llama.cpp's defaults, as pip builds it
cmake -S "$SRC/vendor/llama.cpp" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF ${CMAKE_ARGS:-}
cmake --build "$SRC/build" --config Release -j "$JOBS" --target llama-server llama-batched-bench
mkdir -p "$BIN"
for t in llama-server llama-batched-bench; do
  cp "$(find "$SRC/build" -name "$t" -type f -perm -u+x | head -1)" "$BIN/$t"
done
echo "built $BIN/llama-server and $BIN/llama-batched-bench (llama.cpp of llama-cpp-python $VERSION)"
