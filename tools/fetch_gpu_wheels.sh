#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored through .git/info/exclude), exactly the wheels that the GPU
# machine lacks for Lyra: Python 3.12, manylinux x86_64, no network there. The machine already
# has torch 2.11, torchaudio 2.11, numpy, scipy, matplotlib, pytest and triton; mlflow is not
# carried (the check's specs use `"tracking": {"type": "none"}` and Lyra imports mlflow lazily).
# attrs, pluggy and typing-extensions are carried because cattrs and Lyra need releases newer
# than the machine may have (cattrs: attrs>=25.4, typing-extensions>=4.14; Lyra: pluggy>=1.7).
# constriction is Lyra's entropy coder; visqol-python and pystoi are the eval extra's, whose
# C extensions pesq and libsvm-official (visqol's) have no wheels on PyPI: they travel as
# source distributions in DIR/sdist/, which the check builds there (cython, numpy and a compiler
# are on the machine). descript-audio-codec (dac) and snac are the packages the check compares
# Lyra's reference generators with; of descript-audiotools' requirements it carries what
# `dac.model` imports (argbind and randomname as sdists: PyPI has no wheels of them), not
# librosa, IPython, pyloudnorm, torch-stoi or markdown2, which it never imports.
# torch is not carried: the machine's 2.11 is within Lyra's range.
# Usage: tools/fetch_gpu_wheels.sh [DIR]     (then `make gpu-check` there, or see docs/gpus.md)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.whl}"
PYTHON="${PYTHON:-.venv/bin/python}"
WHEELS=(
    attrs==26.1.0
    cattrs==26.2.1
    cffi==2.1.1
    constriction==0.5.0
    descript-audio-codec==1.0.0
    descript-audiotools==0.7.2
    docstring-parser==0.18.0
    ffmpy==1.0.0
    flatten-dict==0.5.0
    importlib-resources==7.1.0
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    julius==0.2.8
    pluggy==1.7.0
    pycparser==3.12
    pystoi==0.4.1
    referencing==0.37.0
    rpds-py==2026.9.1
    snac==1.2.1
    soundfile==0.14.0
    typing-extensions==4.16.0
    visqol-python==3.8.0
)
SDISTS=(
    argbind==0.3.9
    libsvm-official==3.37.0
    pesq==0.0.4
    randomname==0.2.1
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done
if [ "$DEST" = ".whl" ] && [ -d .git ] && ! grep -qxF '/.whl/' .git/info/exclude 2>/dev/null; then
    mkdir -p .git/info && echo '/.whl/' >> .git/info/exclude
fi
mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # one version of each: two stop the whole install there
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"
rm -rf "$DEST/sdist" && mkdir -p "$DEST/sdist"
"$PYTHON" -m pip download --quiet --no-deps --no-binary=:all: --no-build-isolation \
    -d "$DEST/sdist" "${SDISTS[@]}"
# Lyra itself, for when the GPU machine cannot build it from the checkout (the check builds
# from the checkout first, so this copy is only a fallback and may lag behind).
rm -rf "$DEST/lyra" && mkdir -p "$DEST/lyra"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$DEST/lyra" .
ls -1 "$DEST" "$DEST/sdist" "$DEST/lyra"
echo "$(ls "$DEST"/*.whl | wc -l) wheels and $(ls "$DEST"/sdist/* | wc -l) sdists in $DEST ($(du -sh "$DEST" | cut -f1)); check them with:"
echo "  $PYTHON tools/gpu_check.py --dry-run --out /tmp/gpu-check"
