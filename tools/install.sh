#!/usr/bin/env bash
# One-command install of the lt_mm stack into the current Python environment.
#
#   bash tools/install.sh
#
# Installs torch 2.14.1 + torchvision 0.29.1, mmengine 0.10.7, mmcv 2.1.0 built
# from the PyPI sdist WITH its ops, mmdet 3.3.0, mmsegmentation 1.2.2,
# mmpretrain 1.2.0, lvis, pycocotools, ftfy, regex and lt_mm (editable).
#
# * Idempotent: every step first checks whether its result is already there.
# * The mmcv wheel is cached under $LT_MM_CACHE (default ~/.cache/lt_mm),
#   keyed by mmcv version, torch version, ops flavour (cpu / cuXY) and Python
#   tag, so a torch change can never reuse an ABI-incompatible build.
# * CUDA: when torch sees a GPU (or FORCE_CUDA=1), mmcv's CUDA ops are built
#   too; set TORCH_CUDA_ARCH_LIST to your GPU's arch to shorten the build.
# * Verifies the result at the end and stops naming the step that failed.
#
# Environment knobs: PYTHON (default python3), LT_MM_CACHE, MAX_JOBS,
# LT_MM_SKIP_TORCH=1 (keep whatever torch is installed).
set -euo pipefail

PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LT_MM_CACHE:-$HOME/.cache/lt_mm}
MMCV_VERSION=2.1.0
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
PIP="$PY -m pip install --disable-pip-version-check"

T0=$(date +%s)
step() { echo; echo "==> [lt_mm install] $* (t=$(( $(date +%s) - T0 ))s)"; }
fail() { echo; echo "!! [lt_mm install] FAILED at step: $1" >&2; shift; [ $# -gt 0 ] && echo "!! $*" >&2; exit 1; }

pyver() { $PY - "$1" <<'EOF' 2>/dev/null || true
import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
EOF
}

# are all requirements of these files already installed (name + version)?
reqs_satisfied() {
  $PY - "$@" <<'EOF' 2>/dev/null
import sys, importlib.metadata as m
from packaging.requirements import Requirement
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        try:
            version = m.version(req.name)
        except m.PackageNotFoundError:
            sys.exit(1)
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            sys.exit(1)
EOF
}

# requirements/runtime.txt pins torch / torchvision; with LT_MM_SKIP_TORCH=1
# step 4 gets a copy without them and a constraints file holding the torch
# that is installed (and that mmcv was built against in step 3), so pip never
# swaps it. Prints the runtime requirements file to use (the constraints file
# keep-torch.txt lies beside it).
runtime_reqs() {
  local src="$ROOT/requirements/runtime.txt"
  if [ "${LT_MM_SKIP_TORCH:-0}" != 1 ]; then
    echo "$src"
    return
  fi
  local dir
  dir=$(mktemp -d)
  grep -v -E '^[[:space:]]*(torch|torchvision)[[:space:]]*([<>=!~;[]|$)' "$src" > "$dir/runtime.txt"
  {
    echo "torch==$(pyver torch)"
    local tv
    tv=$(pyver torchvision)
    [ -z "$tv" ] || echo "torchvision==$tv"
  } > "$dir/keep-torch.txt"
  echo "$dir/runtime.txt"
}

# ---------------------------------------------------------------- 1. torch
step "1/6 torch ${TORCH_VERSION} + torchvision ${TORCHVISION_VERSION}"
if [ "${LT_MM_SKIP_TORCH:-0}" = 1 ]; then
  echo "LT_MM_SKIP_TORCH=1: keeping torch $(pyver torch)"
elif [ "$(pyver torch)" = "$TORCH_VERSION" ] && [ "$(pyver torchvision)" = "$TORCHVISION_VERSION" ]; then
  echo "already installed"
else
  $PIP "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    || fail "1/6 torch" "pip could not install torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}"
fi
$PY -c "import torch, torchvision" || fail "1/6 torch" "torch/torchvision do not import"

# ------------------------------------------------------ 2. build requirements
step "2/6 build tools and mmengine"
if reqs_satisfied "$ROOT/requirements/build.txt" && [ "$(pyver mmengine)" = 0.10.7 ]; then
  echo "already installed"
else
  $PIP -r "$ROOT/requirements/build.txt" "mmengine==0.10.7" \
    || fail "2/6 build tools" "pip could not install setuptools<82 / wheel / ninja / mmengine"
fi

# ----------------------------------------------------------------- 3. mmcv
step "3/6 mmcv ${MMCV_VERSION} with ops"
FLAVOUR=$($PY - <<'EOF'
import os, torch
cuda = torch.cuda.is_available() or os.getenv('FORCE_CUDA', '0') == '1'
print('cu' + torch.version.cuda.replace('.', '') if cuda and torch.version.cuda else 'cpu')
EOF
) || fail "3/6 mmcv" "cannot query torch"
TORCH_INSTALLED=$(pyver torch)
PYTAG=$($PY -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_INSTALLED}_${FLAVOUR}_${PYTAG}"
WHEEL_DIR="$CACHE/wheels/$KEY"
echo "cache key: $KEY"

mmcv_ok() {
  $PY - "$MMCV_VERSION" "$TORCH_INSTALLED" "$FLAVOUR" <<'EOF' 2>/dev/null
import sys, json, importlib.metadata as m
import mmcv, mmcv.ops  # noqa: F401  (ops must load against this torch)
assert mmcv.__version__ == sys.argv[1]
# the build stamp written by this script must match the running torch
stamp = m.distribution('mmcv').read_text('lt_mm_build.json')
if stamp is not None:
    s = json.loads(stamp)
    assert s['torch'] == sys.argv[2] and s['flavour'] == sys.argv[3], s
EOF
}

if mmcv_ok; then
  echo "already installed and mmcv.ops loads"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    echo "no cached wheel for $KEY: building from the PyPI sdist (25-40 min on 2 CPU cores)"
    BUILD=$(mktemp -d)
    $PY -m pip download --no-deps --no-build-isolation --no-binary :all: "mmcv==${MMCV_VERSION}" -d "$BUILD" \
      || fail "3/6 mmcv" "could not download the mmcv ${MMCV_VERSION} sdist from PyPI"
    tar -xzf "$BUILD"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD" || fail "3/6 mmcv" "could not unpack the sdist"
    SRC="$BUILD/mmcv-${MMCV_VERSION}"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    if $PY -c "import torch,sys; v=tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(0 if v>=(2,10) else 1)"; then
      sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    fi
    ( cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        $PY -m pip wheel --no-build-isolation --no-deps -w "$BUILD/dist" . ) \
      || fail "3/6 mmcv" "building mmcv ${MMCV_VERSION} with ops failed (see the compiler output above)"
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR/"
    printf '{"torch": "%s", "flavour": "%s"}\n' "$TORCH_INSTALLED" "$FLAVOUR" > "$WHEEL_DIR/build.json"
    rm -rf "$BUILD"
  else
    echo "using cached wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  fi
  $PIP --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl || fail "3/6 mmcv" "could not install the cached wheel"
  # mmcv's own runtime deps (addict, yapf, opencv, ...)
  $PIP "$(ls "$WHEEL_DIR"/mmcv-*.whl)" || fail "3/6 mmcv" "could not install mmcv's dependencies"
  # stamp the install so a later torch change is detected
  DIST=$($PY -c "import importlib.metadata as m, os; d=m.distribution('mmcv'); print(d._path)")
  cp "$WHEEL_DIR/build.json" "$DIST/lt_mm_build.json"
  mmcv_ok || fail "3/6 mmcv" "mmcv.ops does not load after install"
fi

# ------------------------------------------------------- 4. OpenMMLab toolboxes
step "4/6 mmdet / mmsegmentation / mmpretrain and runtime requirements"
RUNTIME=$(runtime_reqs)
CONSTRAINT=""
if [ "$RUNTIME" != "$ROOT/requirements/runtime.txt" ]; then
  CONSTRAINT="-c $(dirname "$RUNTIME")/keep-torch.txt"
  echo "LT_MM_SKIP_TORCH=1: runtime requirements without the torch pins, torch held at $(pyver torch)"
fi
REQS="$ROOT/requirements/mminstall.txt $RUNTIME $ROOT/requirements/tests.txt $ROOT/requirements/optional.txt"
if reqs_satisfied $REQS; then
  echo "already installed"
else
  $PIP $CONSTRAINT $(for r in $REQS; do echo "-r $r"; done) \
    || fail "4/6 toolboxes" "pip could not install requirements/{mminstall,runtime,tests,optional}.txt"
fi

# ----------------------------------------------------------------- 5. lt_mm
step "5/6 lt_mm (editable)"
INSTALLED_AT=$(cd / && $PY -c "import lt_mm, os; print(os.path.dirname(os.path.dirname(os.path.abspath(lt_mm.__file__))))" 2>/dev/null || true)
if [ "$INSTALLED_AT" = "$ROOT" ] && [ -n "$(pyver lt_mm)" ]; then
  echo "already installed (editable, $ROOT)"
else
  $PIP --no-deps --no-build-isolation -e "$ROOT" || fail "5/6 lt_mm" "pip install -e . failed"
fi

# ---------------------------------------------------------------- 6. verify
step "6/6 verify"
$PY - <<'EOF' || fail "6/6 verify" "an import failed (see above)"
import importlib, sys, traceback
mods = ['torch', 'torchvision', 'mmengine', 'mmcv.ops', 'mmdet', 'mmseg',
        'mmpretrain', 'lvis', 'pycocotools', 'lt_mm', 'lt_mm.cls',
        'lt_mm.seg', 'lt_mm.det']
for mod in mods:
    try:
        importlib.import_module(mod)
    except Exception:
        traceback.print_exc(limit=3)
        print(f"!! 'import {mod}' failed")
        sys.exit(1)
    print(f'  import {mod}: ok')
import torch, mmcv, mmengine, mmdet, mmseg, mmpretrain
print(f'  torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'mmpretrain {mmpretrain.__version__}')
EOF
echo
echo "lt_mm install: OK"
