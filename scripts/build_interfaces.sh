#!/usr/bin/env bash
# Build route (b), no ROS install: generate the msg/ interfaces of this ament_cmake package with
# plain cmake against the ROS 2 Kilted wheels from PyPI in .venv, installing into install/.
# Every step is idempotent; with msg/, CMakeLists.txt, package.xml and the pins unchanged it is a
# no-op that takes well under a second. Under a ROS 2 install use `colcon build` instead.
#   usage: bash scripts/build_interfaces.sh [--force]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
BUILD="$ROOT/build/semcomm_ros"
PREFIX="$ROOT/install"
FORCE="${1:-}"
log() { echo "[build_interfaces] $*"; }
t0=$(date +%s)

if [ ! -x "$PY" ]; then
  echo "[build_interfaces] no venv at $VENV: run scripts/setup.sh first" >&2
  exit 1
fi
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null || { echo "[build_interfaces] '$tool' not found: install cmake, make and a C/C++ compiler (Debian: apt-get install cmake build-essential)" >&2; exit 1; }
done

# 1. The pinned build wheels (ament_cmake, rosidl generators and type supports, catkin_pkg, empy, lark).
REQ_HASH="$(sha256sum requirements-ros-build.txt | cut -d' ' -f1)"
if [ "$(cat "$VENV/.stamp-ros-build" 2>/dev/null)" != "$REQ_HASH" ]; then
  log "pip install -r requirements-ros-build.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements-ros-build.txt
  echo "$REQ_HASH" > "$VENV/.stamp-ros-build"
else
  log "ROS build wheels: already installed (pins unchanged)"
fi

# 2. The two path fix-ups: the wheels' exported CMake files name the wheel build machine's
#    Python include dir and numpy include dir; point them at this interpreter's.
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
mapfile -t STALE < <(grep -l -r --include='*.cmake' -e '/opt/python/cp311-cp311/' "$VENV/share" 2>/dev/null || true)
if [ "${#STALE[@]}" -gt 0 ]; then
  log "rewriting build-machine paths in ${#STALE[@]} CMake files -> $PY_INC, $NP_INC"
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" \
    "${STALE[@]}"
else
  log "CMake path fix-ups: already applied"
fi

# 3. cmake + make + install, skipped when the inputs have not changed since the last build.
INPUT_HASH="$( (cat CMakeLists.txt package.xml requirements-ros-build.txt msg/*.msg scripts/build_interfaces.sh; ls launch config 2>/dev/null; echo "$PY") | sha256sum | cut -d' ' -f1)"
SITE="$PREFIX/lib/$("$PY" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages"
if [ -z "$FORCE" ] && [ "$(cat "$PREFIX/.stamp-interfaces" 2>/dev/null)" = "$INPUT_HASH" ] \
   && [ -f "$SITE/semcomm_ros/msg/__init__.py" ]; then
  log "interfaces up to date in $PREFIX ($(( $(date +%s) - t0 )) s)"
  exit 0
fi
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# CMake refuses to export include dirs that lie inside the source tree, and .venv (numpy's headers)
# does: configure from a staged copy of the package's build inputs under build/ instead.
SRC="$ROOT/build/semcomm_ros_src"
rm -rf "$SRC"; mkdir -p "$SRC"
cp -r CMakeLists.txt package.xml msg resource "$SRC/"
for d in launch config; do [ -d "$d" ] && cp -r "$d" "$SRC/"; done
mkdir -p "$ROOT/build"
log "cmake configure $SRC -> $BUILD"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_BUILD_TYPE=Release \
  -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
  -DSEMCOMM_INSTALL_PYTHON_SOURCES=OFF >"$BUILD.configure.log" 2>&1 \
  || { tail -40 "$BUILD.configure.log" >&2; exit 1; }
log "make -j$(nproc) (rosidl generators + type supports)"
make -C "$BUILD" -j"$(nproc)" >"$BUILD.make.log" 2>&1 || { tail -40 "$BUILD.make.log" >&2; exit 1; }
log "make install -> $PREFIX"
make -C "$BUILD" install >"$BUILD.install.log" 2>&1 || { tail -40 "$BUILD.install.log" >&2; exit 1; }
# rosidl installs an empty semcomm_ros/__init__.py beside the generated code. Here the real package
# is the source tree: drop the empty one so install/'s folder is only a namespace portion that
# semcomm_ros/__init__.py adds to its __path__ (pkgutil.extend_path) and semcomm_ros.msg resolves.
rm -f "$SITE/semcomm_ros/__init__.py"
rm -rf "$SITE/semcomm_ros/__pycache__"
echo "$INPUT_HASH" > "$PREFIX/.stamp-interfaces"
log "built $(ls msg/*.msg | wc -l) interfaces into $PREFIX in $(( $(date +%s) - t0 )) s"
