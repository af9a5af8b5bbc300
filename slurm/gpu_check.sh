#!/usr/bin/env bash
# What no CPU machine exercises, checked on one GPU: the quick RLVR pipeline (pre-training, mid-training, sampled
# evaluation, GRPO) in bf16 with vLLM generating (sampled evaluation and GRPO's rollouts, TRL's colocate mode), then
# `ra3lab bench scaling` (training tokens/s over processes, and generation tokens/s of vLLM against HF generate).
#
#   srun --gpus=1 --cpus-per-task=8 --mem=64G bash slurm/gpu_check.sh     # or directly on a GPU machine
#
# vLLM pins its own torch build, so the check sets up its own environment, .venv-gpu, next to the CPU one (.venv).
# Runs go to $RA3LAB_RUNS (default: a fresh scratch folder); the last lines are three JSON summaries.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
test -x .venv-gpu/bin/python || python3 -m venv .venv-gpu
.venv-gpu/bin/pip install --quiet --upgrade pip
.venv-gpu/bin/pip install --quiet -e '.[gpu]'
export RA3LAB_RUNS="${RA3LAB_RUNS:-$(mktemp -d)}"
echo "runs in $RA3LAB_RUNS"
gpu="runtime.device=cuda runtime.dtype=bf16 generation.backend=vllm"
.venv-gpu/bin/ra3lab run evaluate --quick $gpu --json
.venv-gpu/bin/ra3lab run rlvr --quick $gpu --json
.venv-gpu/bin/ra3lab bench scaling --json
