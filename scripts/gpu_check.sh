#!/usr/bin/env bash
# The one prepared check for a machine with one NVIDIA GPU. Builds the CUDA binaries, runs each
# part with its own time limit, and ends with one table (also written to WORKDIR/table.md):
#
#   (a) CUDA = Flex: inference on the reference fixtures (all nine features and the decoded
#       waveform of three cases) and one training step of each stage against Flex
#       (tests/device_parity.rs with LOSATOK_TEST_CUDA=1);
#   (b) NCCL with one rank: the demo's tiny runs of both stages through `losatok launch` with
#       `--collective nccl`, and the CLI demo itself on the GPU;
#   (c) full size on the GPU: reconstruct of 60 s, one stage-1 and one stage-2 step at the
#       paper's per-GPU batch (8 × 3 s), and the peak GPU memory over those benchmarks;
#   (d) with --reference: the same operations in PyTorch on the same GPU, alternated with ours
#       (scripts/time_reference.py, which needs torch in the Python it runs), and the ratios;
#   (e) the gradient all-reduce: with one GPU nothing crosses a link (the trainer skips the
#       reduction at world size 1), so the table gives the bytes per step and the README's
#       estimate instead of a measurement.
#
# Usage: scripts/gpu_check.sh [--reference DIR] [--workdir DIR] [--skip-build]
# Sized for under 12 minutes including the build on a 16-core H100 host. Building needs no CUDA
# toolkit (CUDARC_CUDA_VERSION, default 12080); running needs the driver, NVRTC and NCCL.
set -uo pipefail

reference=""
workdir=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --reference) reference="$2"; shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
root=$(pwd)
workdir=${workdir:-$(mktemp -d /tmp/losatok-gpu-check.XXXXXX)}
mkdir -p "$workdir"
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-12080}
table="$workdir/table.md"
printf '| check | result | detail |\n|---|---|---|\n' > "$table"
failed=0
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" >> "$table"; [ "$2" = FAIL ] && failed=1; return 0; }
log() { echo "== $*" >&2; }

if ! command -v nvidia-smi > /dev/null; then
    echo "gpu_check.sh: nvidia-smi not found: this script needs a machine with an NVIDIA GPU" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$workdir/gpu.txt"
gpu=$(head -1 "$workdir/gpu.txt")
cargo_cuda=(cargo --locked)

# ---- build ----
if [ "$build" = 1 ]; then
    log "building (release, cuda)"
    start=$(date +%s)
    if "${cargo_cuda[@]}" build --release --features cuda -p losatok-cli > "$workdir/build.log" 2>&1 \
        && "${cargo_cuda[@]}" build --release --features cuda -p losatok --example bench_worker >> "$workdir/build.log" 2>&1 \
        && "${cargo_cuda[@]}" test --release --features cuda -p losatok --test device_parity --no-run >> "$workdir/build.log" 2>&1 \
        && "${cargo_cuda[@]}" bench --features cuda -p losatok --no-run >> "$workdir/build.log" 2>&1; then
        row "build" ok "$(( $(date +%s) - start )) s"
    else
        row "build" FAIL "see $workdir/build.log"
        cat "$table"; exit 1
    fi
fi
losatok="$root/target/release/losatok"

# ---- (a) parity ----
log "(a) CUDA against the fixtures and Flex"
if LOSATOK_TEST_CUDA=1 timeout 300 "${cargo_cuda[@]}" test --release --features cuda -p losatok \
    --test device_parity -- --nocapture > "$workdir/parity.log" 2>&1; then
    row "(a) CUDA = Flex: inference fixtures, stage-1 and stage-2 step" ok "tolerances of tests/device_parity.rs"
else
    row "(a) CUDA = Flex: inference fixtures, stage-1 and stage-2 step" FAIL "$(grep -m1 -E 'panicked|error' -A1 "$workdir/parity.log" | tr '\n|' '  ' | cut -c1-200)"
fi

# ---- (b) NCCL, one rank, and the demo on the GPU ----
log "(b) the demo on the GPU, then both stages through NCCL with one rank"
if timeout 300 "$losatok" demo --quick --device cuda --out "$workdir/losatok-demo" > "$workdir/demo.log" 2>&1; then
    row "(b) losatok demo --quick --device cuda" ok "$(grep -m1 -i 'mel distance' "$workdir/demo.log" | cut -c1-120)"
else
    row "(b) losatok demo --quick --device cuda" FAIL "see $workdir/demo.log"
fi
mkdir -p "$workdir/configs"
cp configs/sembo_tiny_cpu.yml configs/losatok_tiny_cpu.yml "$workdir/configs/"
for stage in sembo losatok; do
    cmd=train; [ "$stage" = sembo ] && cmd=train-sembo
    if timeout 240 "$losatok" launch --nproc-per-node 1 -- "$cmd" "$workdir/configs/${stage}_tiny_cpu.yml" \
        --run-dir "$workdir/nccl-$stage" --device cuda --collective nccl > "$workdir/nccl-$stage.log" 2>&1; then
        row "(b) NCCL world size 1, $stage (tiny config)" ok "$(wc -l < "$workdir/nccl-$stage/metrics.jsonl") metric lines"
    else
        row "(b) NCCL world size 1, $stage (tiny config)" FAIL "see $workdir/nccl-$stage.log"
    fi
done

# ---- (c) full size on the GPU ----
log "(c) full-size benchmarks"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$workdir/memory.csv" 2>/dev/null &
sampler=$!
if LOSATOK_BENCH_SIZES=full timeout 240 "${cargo_cuda[@]}" bench --features cuda -p losatok --bench inference \
    -- reconstruct > "$workdir/bench-inference.log" 2>&1; then
    row "(c) reconstruct, full size" ok "$(grep -m1 'full/reconstruct:' "$workdir/bench-inference.log" | cut -c1-160)"
else
    row "(c) reconstruct, full size" FAIL "see $workdir/bench-inference.log"
fi
if LOSATOK_BENCH_SIZES=full LOSATOK_BENCH_BATCH=8 timeout 420 "${cargo_cuda[@]}" bench --features cuda -p losatok \
    --bench training > "$workdir/bench-training.log" 2>&1; then
    for s in stage1_step stage2_step; do
        row "(c) $s, 8 × 3 s, full size" ok "$(grep -m1 "full/$s:" "$workdir/bench-training.log" | cut -c1-160)"
    done
else
    row "(c) training steps, 8 × 3 s, full size" FAIL "see $workdir/bench-training.log"
fi
kill "$sampler" 2> /dev/null
peak=$(sort -n "$workdir/memory.csv" | tail -1)
row "(c) peak GPU memory over (c)" info "${peak:-?} MiB (nvidia-smi, whole GPU)"

# ---- (d) PyTorch on the same GPU ----
if [ -n "$reference" ]; then
    log "(d) PyTorch reference, alternated with ours"
    if timeout 600 python3 scripts/time_reference.py --reference "$reference" --device cuda \
        --worker "$root/target/release/examples/bench_worker" --train-batches 8 --stage2-batches 8 \
        --repeats 3 --no-wait-quiet --json "$workdir/reference.json" > "$workdir/reference.log" 2>&1; then
        row "(d) ours/PyTorch, same GPU" ok "table in $workdir/reference.log"
    else
        row "(d) ours/PyTorch, same GPU" FAIL "see $workdir/reference.log"
    fi
else
    row "(d) ours/PyTorch, same GPU" "not run" "pass --reference DIR (a checkout of wxzyd123/LoSATok; torch installed)"
fi

# ---- (e) all-reduce ----
row "(e) gradient all-reduce" "not measured" "one GPU: nothing crosses a link; see README, Multi-GPU"

echo
echo "GPU: $gpu"
cat "$table"
exit $failed
