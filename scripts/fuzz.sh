#!/usr/bin/env bash
# Fuzz every reader of untrusted input (fuzz/fuzz_targets) for SECONDS each (default 600), with
# libFuzzer and AddressSanitizer, a 2 GB memory limit, and corpora seeded from real files:
#   audio_decode     every supported format (tests/fixtures/audio: WAV 8/16/24/32-bit, float,
#                    μ-law, MS ADPCM, FLAC, Ogg/Vorbis, MP3; mono to 10 channels)
#   checkpoint_open  the tiny checkpoints (raw, wrapped, split .pth; safetensors export)
#   feature_file     feature files written by `losatok encode` (3 and 9 features)
#   config_yaml      the shipped model and training configs
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz (installed here
# if missing). Any crash, sanitizer report or out-of-memory stops with a non-zero exit and the
# reproducer under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 60 audio_decode
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(audio_decode checkpoint_open feature_file config_yaml)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

corpus=fuzz/corpus
mkdir -p "$corpus"/{audio_decode,checkpoint_open,feature_file,config_yaml}
cp tests/fixtures/audio/*.wav tests/fixtures/audio/*.flac tests/fixtures/audio/*.ogg \
   tests/fixtures/audio/*.mp3 "$corpus/audio_decode/"
cp tests/fixtures/model/*.pth "$corpus/checkpoint_open/"
cp configs/*.yml tests/fixtures/model/*.yml "$corpus/config_yaml/"

# real feature files, written by the tool itself (and a safetensors export for the loader)
cargo build --release --locked -p losatok-cli
bin=target/release/losatok
model=(--checkpoint tests/fixtures/model/losatok_tiny.pth --config tests/fixtures/model/tiny_config.yml)
for f in f32_16k_mono.wav s16_48k_mono.wav; do
    "$bin" encode "tests/fixtures/audio/$f" "$corpus/feature_file/${f%.wav}.safetensors" "${model[@]}" --force
    "$bin" encode "tests/fixtures/audio/$f" "$corpus/feature_file/${f%.wav}.all.safetensors" \
        "${model[@]}" --all-features --force
done

for t in "${targets[@]}"; do
    echo "== $t: $secs s"
    cargo +nightly fuzz run -O -a "$t" "$corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1
done
