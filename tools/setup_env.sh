#!/usr/bin/env bash
# Create (or reuse) the virtual environment mmc3 runs in, then prove the stack.
#
#   VENV=$(bash tools/setup_env.sh)   # create if missing, verify; progress on stderr,
#                                     # the environment's path on stdout
#
# Environment variables:
#   MMC3_HOME        cache root kept outside the clone
#                    (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mmc3)
#   MMC3_VENV        the virtual environment (default: $MMC3_HOME/venv-<torch>)
#   MMC3_TORCH_SPEC  torch/torchvision pair (default: requirements/torch.txt)
#   MMC3_PYTHON      interpreter used to create the venv (default: python3.11 or python3)
#   MAX_JOBS         compile jobs for mmcv (default: number of cores)
#
# A second run on the same machine takes seconds: the venv is reused when the
# requirement files have not changed, and the compiled mmcv wheel is cached
# under $MMC3_HOME/wheels/<torch version>/ (keyed on torch, because pip's own
# cache keys a built wheel on the sdist alone and would reuse an
# ABI-incompatible build after a torch change).
set -euo pipefail
exec 3>&1 1>&2   # progress to stderr; only the venv path goes to stdout

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MMC3_HOME=${MMC3_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/mmc3}
if [ -n "${MMC3_TORCH_SPEC:-}" ]; then
    TORCH_SPEC=$MMC3_TORCH_SPEC
else
    TORCH_SPEC=$(grep -vE '^\s*(#|$)' "$ROOT/requirements/torch.txt" | tr '\n' ' ')
fi
TORCH_VERSION=$(echo "$TORCH_SPEC" | tr ' ' '\n' | sed -n 's/^torch==//p')
if [ -z "$TORCH_VERSION" ]; then
    echo "setup_env: the torch spec must pin torch with '==', got: $TORCH_SPEC" >&2
    exit 2
fi
VENV=${MMC3_VENV:-$MMC3_HOME/venv-torch$TORCH_VERSION}
PY=${MMC3_PYTHON:-$(command -v python3.11 || command -v python3)}
WHEELS=$MMC3_HOME/wheels/torch-$TORCH_VERSION
MMCV_VERSION=2.1.0

say() { echo "[setup_env] $*"; }
# This machine kind's pip config lists local mirrors that hold only some
# packages; pip warns once per missing package. Keep the real messages.
quiet_pip() {
    "$VENV/bin/python" -m pip --disable-pip-version-check "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

stamp_of() {
    { echo "$TORCH_SPEC"; cat "$ROOT"/requirements/*.txt "$ROOT/setup.py"; } | sha256sum | cut -d' ' -f1
}
STAMP=$(stamp_of)

if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.mmc3-stamp" 2>/dev/null)" = "$STAMP" ]; then
    say "reusing $VENV"
else
    say "creating the environment in $VENV (torch $TORCH_VERSION)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    quiet_pip install -q --upgrade "pip<26.2"
    say "installing build tools"
    quiet_pip install -q -r "$ROOT/requirements/build.txt"
    say "installing $TORCH_SPEC (a first install downloads several GB)"
    # shellcheck disable=SC2086
    quiet_pip install -q $TORCH_SPEC

    mkdir -p "$WHEELS"
    wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        say "building mmcv $MMCV_VERSION with its C++ ops against torch $TORCH_VERSION:"
        say "this takes about 8-11 minutes on 2 cores; the wheel is cached in $WHEELS"
        src=$(mktemp -d)
        quiet_pip download -q --no-deps --no-binary :all: --no-build-isolation \
            "mmcv==$MMCV_VERSION" -d "$src"
        tar -xzf "$src"/mmcv-$MMCV_VERSION.tar.gz -C "$src"
        major_minor=$(echo "$TORCH_VERSION" | cut -d. -f1,2)
        if [ "$(printf '%s\n2.14\n' "$major_minor" | sort -V | head -n 1)" = "2.14" ]; then
            # torch >= 2.14 headers need C++20; mmcv 2.1.0 appends -std=c++17 last.
            say "torch >= 2.14: compiling mmcv with -std=c++20"
            sed -i 's/-std=c++17/-std=c++20/g; s/-std=c++14/-std=c++20/g' "$src/mmcv-$MMCV_VERSION/setup.py"
        fi
        start=$(date +%s)
        MAX_JOBS=${MAX_JOBS:-$(nproc)} quiet_pip wheel -q --no-deps --no-build-isolation \
            --no-cache-dir "$src/mmcv-$MMCV_VERSION" -w "$WHEELS"
        say "mmcv built in $(( $(date +%s) - start )) s"
        rm -rf "$src"
        wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl | head -n 1)
    else
        say "using the cached mmcv wheel $wheel"
    fi
    say "installing mmcv, mmengine, mmdet, mmsegmentation, mmpretrain and test tools"
    quiet_pip install -q "$wheel" -r "$ROOT/requirements/mminstall.txt" \
        -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
        -r "$ROOT/requirements/tools.txt" \
        -r "$ROOT/requirements/build.txt" $TORCH_SPEC
    echo "$STAMP" > "$VENV/.mmc3-stamp"
fi

# mmc3 itself, editable, pointing at this checkout (a fresh clone elsewhere
# re-links the cached environment in a few seconds).
where=$(cd / && "$VENV/bin/python" -c 'import mmc3, os; print(os.path.dirname(os.path.dirname(os.path.abspath(mmc3.__file__))))' 2>/dev/null || true)
if [ "$where" != "$ROOT" ]; then
    say "installing mmc3 (editable) from $ROOT"
    quiet_pip install -q --no-deps --no-build-isolation -e "$ROOT"
fi

say "verifying the stack"
(cd "$ROOT" && "$VENV/bin/python" - <<'PY'
import torch
import mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain, mmc3  # noqa: F401
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
print(f'[setup_env] ok: torch {torch.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}')
PY
)
echo "$VENV" >&3
