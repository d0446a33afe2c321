#!/usr/bin/env bash
# Both training stages on one node, one process per GPU: SemBo (stage 1), then the LoSATok GAN
# (stage 2) on the stage-1 export. Run from the repository root:
#
#   scripts/train_1node.sh                 # 8 GPUs, run folders runs/sembo and runs/losatok
#   NPROC=4 scripts/train_1node.sh         # 4 GPUs (the global batch stays the config's)
#
# Re-running the script continues both runs from their latest checkpoints. The same job with
# torchrun instead of `losatok launch`:
#
#   torchrun --standalone --nproc_per_node 8 --no-python \
#       target/release/losatok train-sembo configs/sembo_8xh100.yml --run-dir runs/sembo --device cuda --resume
#
# Environment: LOSATOK (the binary, built with `cargo build --release --features cuda`),
# NPROC (GPUs, default 8), SEMBO_CONFIG, LOSATOK_CONFIG (default: the 8×H100 configs).
set -euo pipefail

LOSATOK=${LOSATOK:-target/release/losatok}
NPROC=${NPROC:-8}
SEMBO_CONFIG=${SEMBO_CONFIG:-configs/sembo_8xh100.yml}
LOSATOK_CONFIG=${LOSATOK_CONFIG:-configs/losatok_8xh100.yml}

if [[ ! -x $LOSATOK ]]; then
    echo "error: $LOSATOK not found; build it with: cargo build --release --features cuda" >&2
    exit 2
fi

# Stage 1. --resume continues a run folder that has checkpoints and starts an empty one.
"$LOSATOK" launch --nproc-per-node "$NPROC" -- \
    train-sembo "$SEMBO_CONFIG" --run-dir runs/sembo --device cuda --resume

# Stage 2 reads runs/sembo/semantic_encoder.safetensors (see its `semantic_encoder:` entry).
"$LOSATOK" launch --nproc-per-node "$NPROC" -- \
    train "$LOSATOK_CONFIG" --run-dir runs/losatok --device cuda --resume
