#!/usr/bin/env python3
"""Side-by-side timing: the PyTorch reference LoSATok vs ours, in persistent workers, run by run.

    python scripts/time_reference.py --reference /path/to/LoSATok-checkout \
        [--checkpoint losatok_kl1e-2.pth] [--input some.wav | --seconds 10] [--threads 2] \
        [--repeats 5] [--worker target/release/examples/bench_worker] [--device cpu] \
        [--train-batches 1,8] [--stage2-batches 1] [--no-train] [--json out.json]

The reference code is imported from YOUR checkout of https://github.com/wxzyd123/LoSATok
(`--reference`); this project does not ship it. The reference's Python environment is needed
(torch + torchaudio of matching versions, transformers, einops, pyyaml, librosa, soundfile);
run this script with that interpreter, or name it with `--python`.

Method
  * Two persistent worker processes, each with the model loaded once:
    - reference: this script re-invoked as a worker (`--_worker serve`) in the reference's
      environment: `infer.load_losatok(config, checkpoint, device)`, `torch.set_num_threads(threads)`;
    - ours: `bench_worker --checkpoint PATH [--config PATH]` (Rust, `cargo build --release
      --example bench_worker`), environment RAYON_NUM_THREADS=threads.
    They are started one after the other (each load on a quiet machine, timed by the worker).
  * Both speak the same protocol (JSON lines; see "Protocol" below). The driver sends one
    command at a time and alternates the sides run by run: ref, ours, ours, ref, ref, ours, …
    (the order is swapped every round, so neither side always goes first). Each row starts with
    one untimed warm-up run per side, then `--repeats` timed runs per side.
  * Quiet machine. Before every timed run the driver waits until the other load (machine busy
    time from /proc/stat minus the CPU time of both workers and of the driver) has been
    ≤ `--load-limit` (0.15) cores, and both workers idle, over a `--quiet-window` (1 s) window;
    it gives up after `--quiet-timeout` seconds with a warning (`--no-wait-quiet`: do not wait).
    During each run it measures the same foreign load over the run's wall time, and the idle
    partner's CPU. A run where either exceeds the limit (after a 2-tick allowance for the
    10 ms accounting granularity) is discarded and run again, up to `--max-retries` times per
    run; the discarded runs are counted in the table and kept in the JSON output, and a run that
    is still contended after the last retry is kept and flagged.
  * Rows (each printed only when both sides succeeded):
    - reconstruct / encode / decode of the input file, warm, per file: each side reads the
      input file, computes and writes its output file (the driver deletes the output before each
      run, outside the timing). Reference: `infer._load_audio` (librosa, 16 kHz mono) →
      `infer.reconstruct` / `infer.encode` / `infer.decode` under `torch.inference_mode()` →
      wav via soundfile (float32, clamped to ±1 as the reference's saver does) or the features
      via `torch.save` ({z, mu, logvar}, the tensors our feature file holds by default).
      Decode: each side decodes the feature file that ITS OWN encode wrote (ours: its
      safetensors feature file; reference: the torch.save file) into a wav.
    - stage-1 step at each `--train-batches` size and stage-2 step at each `--stage2-batches`
      size, on 3 s (48 000-sample) synthetic crops. Reference: `scripts/torch_train_step.py`
      (the reference's own modules + the losses and MFD discriminator of loss-spec.md;
      its docstring lists what is and is not identical to our trainer). Models are built on
      first use, untimed; each side's first step of a row is the discarded warm-up.
    Columns: median wall time of the runs kept, [min – max], CPU cores used (the worker's own
    CPU seconds / wall), ours/ref of the medians, discarded runs (ref/ours).
  * Whole-process rows: model load time (as each worker reports it), peak RSS after loading,
    and the peak RSS of each worker over each row (VmHWM, reset before the row) and overall.

Protocol (what `bench_worker` implements; the reference worker here implements the same)
  start: `WORKER --checkpoint PATH [--config PATH]`; stdout lines that are not JSON objects are
  ignored, stderr is a log (kept in the work folder); the worker prints `{"ready": true,
  "load_s": S, ...}` once loaded. Then one command per stdin line, one JSON reply line each:
    {"op": "reconstruct_file", "input": IN, "output": OUT}
    {"op": "encode_file", "input": IN, "output": OUT}
    {"op": "decode_file", "input": FEATURES, "output": OUT}
    {"op": "stage1_step", "batch": N}      {"op": "stage2_step", "batch": N}
    {"op": "quit"}                          (the worker may exit without replying)
  reply: {"op": ..., "wall_s": float, "cpu_s": float, ...} or {"op": ..., "error": "message"};
  cpu_s is the worker's own CPU seconds (all threads) during the operation.

Checkpoint
  * `--checkpoint FILE`: an official AudioVAE state dict (raw or {"state_dict": ...}); both sides
    load it. The reference needs a `ckpts/semantic_encoder.pth` to construct the model (it is then
    overwritten by the strict load); the script derives one from FILE's `semantic_encoder.*`
    entries in the work folder.
  * Otherwise: random weights (`--seed`), made by the reference's own constructors, saved as a raw
    AudioVAE state dict (official key layout, 534 entries) in the work folder, and then loaded by
    both sides from that file. The semantic BatchNorm running stats are set to mean -40 dB /
    std 20 dB (plausible for log-mel in dB; the defaults 0/1 are finite too).
  * `--tiny` (for testing this script and the workers, not for numbers): a tiny random model
    (embed 64, 2 encoder blocks, decoder 64/128/2, latent 16) written in the official layout with
    a config file both sides read (`tiny_config.yml` in the work folder, passed to ours as
    `--config`); all DSP sizes, the training crops and the MFD stay real.

Semantic encoder stand-in
  The reference gets its frozen semantic encoder with
  `AutoModelForCausalLM.from_pretrained("mispeech/midashenglm-7b-1021-fp32", trust_remote_code=True)
  .audio_encoder`, i.e. it downloads a 7B audio-LLM and its remote code from the Hugging Face Hub.
  That is replaced, in this script only, by `_DashengAudioEncoder` below: the MiDashengLM audio
  encoder (Dasheng-0.6B size: 32 blocks, 1280 wide, 16 heads) written from the public vLLM/SGLang
  ports, with the same parameter names, shapes and forward (log-power mel in dB with per-item
  top_db, BatchNorm over mel bins, 64x4 patches, 252-token chunks with restarting positions,
  pre-norm ViT blocks with SDPA attention, final LayerNorm). Whether the blocks have a qkv bias or
  layer scale is read from `--checkpoint` when one is given (default: qkv bias, no layer scale);
  its sizes from the config's `SemanticEncoder.audio_encoder_config` when present (this
  project's config extension). Everything else is the reference's own code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

GIB = 1024.0 ** 3
SR = 16000
TRAIN_SAMPLES = 48000           # 3 s crops (protocol)
DEFAULT_CONFIG = os.path.join("config", "16k_16k_25Hz_losatok.yml")
DEFAULT_WORKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "target", "release", "examples", "bench_worker")
REF_FILES = ("losatok.py", "semantic_bottleneck.py", "infer.py",
             os.path.join("modules", "modeling_dasheng_tokenizer.py"),
             os.path.join("modules", "vocos.py"))
SEM_CKPT_REL = os.path.join("ckpts", "semantic_encoder.pth")
REF_FEATURES = ("z", "mu", "logvar")     # what our encode writes by default


class UsageError(Exception):
    pass


def die(msg: str, code: int = 2) -> None:
    print(f"time_reference.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


def note(msg: str) -> None:
    print(f"[time_reference] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Worker side (runs inside the reference's Python environment)
# ---------------------------------------------------------------------------------------------

def _build_standin_classes():
    """The MiDashengLM audio encoder, as a torch module with the Hugging Face parameter names."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchaudio.functional as AF

    class Frontend(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c
            # non-persistent: not in any checkpoint (as in the HF remote code)
            self.register_buffer("spectrogram_window", torch.hann_window(c["win_length"]),
                                 persistent=False)
            self.register_buffer("melscale_fbanks", AF.melscale_fbanks(
                n_freqs=c["n_fft"] // 2 + 1, f_min=c["f_min"], f_max=c["f_max"],
                n_mels=c["n_mels"], sample_rate=c["sample_rate"]), persistent=False)

        def forward(self, wav):
            c = self.c
            spec = AF.spectrogram(waveform=wav.to(torch.float32), pad=0,
                                  window=self.spectrogram_window, n_fft=c["n_fft"],
                                  hop_length=c["hop_length"], win_length=c["win_length"],
                                  power=2, normalized=False, center=c["center"])
            mel = (spec.mT @ self.melscale_fbanks).mT
            # [B,1,F,T] so that top_db is applied per item
            db = AF.amplitude_to_DB(mel.unsqueeze(1), multiplier=10, amin=1e-10,
                                    db_multiplier=0, top_db=120).squeeze(1)
            return db.to(wav.dtype)

    class PatchEmbed(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.proj = nn.Conv2d(c["input_channels"], c["embed_dim"],
                                  kernel_size=c["patch_size"], stride=c["patch_stride"])

        def forward(self, x):
            return self.proj(x)

    class LayerScale(nn.Module):
        def __init__(self, dim, init_values):
            super().__init__()
            self.gamma = nn.Parameter(init_values * torch.ones(dim))

        def forward(self, x):
            return x * self.gamma

    class Attention(nn.Module):
        def __init__(self, dim, heads, qkv_bias):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            x = F.scaled_dot_product_attention(q, k, v)
            return self.proj(x.transpose(1, 2).reshape(b, n, c))

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            d = c["embed_dim"]
            self.norm1 = nn.LayerNorm(d, eps=1e-6)
            self.attn = Attention(d, c["num_heads"], c["qkv_bias"])
            self.ls1 = LayerScale(d, c["init_values"]) if c["init_values"] else nn.Identity()
            self.norm2 = nn.LayerNorm(d, eps=1e-6)
            self.mlp = Mlp(d, int(d * c["mlp_ratio"]))
            self.ls2 = LayerScale(d, c["init_values"]) if c["init_values"] else nn.Identity()

        def forward(self, x):
            x = x + self.ls1(self.attn(self.norm1(x)))
            return x + self.ls2(self.mlp(self.norm2(x)))

    class DashengAudioEncoder(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c
            self.front_end = Frontend(c)
            self.init_bn = nn.BatchNorm2d(c["n_mels"], momentum=0.01)
            self.patch_embed = PatchEmbed(c)
            grid_f = c["n_mels"] // c["patch_stride"][0]
            grid_t = c["target_length"] // c["patch_stride"][1]
            self.time_pos_embed = nn.Parameter(torch.randn(1, c["embed_dim"], 1, grid_t) * 0.02)
            self.freq_pos_embed = nn.Parameter(torch.randn(1, c["embed_dim"], grid_f, 1) * 0.02)
            self.blocks = nn.ModuleList(Block(c) for _ in range(c["depth"]))
            self.norm = nn.LayerNorm(c["embed_dim"], eps=1e-6)

        def forward_features(self, x):
            t = x.shape[-1]
            x = x + self.time_pos_embed[:, :, :, :t] + self.freq_pos_embed
            x = torch.permute(torch.flatten(x, 2, 3), (0, 2, 1))
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)

        def forward(self, x, x_length=None):
            x = self.front_end(x).to(self.time_pos_embed.dtype)
            x = x.unsqueeze(1).permute(0, 2, 1, 3)      # BN over the mel axis
            x = self.init_bn(x).permute(0, 2, 1, 3)
            x = self.patch_embed(x)
            chunk = self.c["target_length"] // self.c["patch_stride"][1]
            outs = [self.forward_features(s) for s in x.split(chunk, dim=-1)]
            return torch.cat(outs, dim=1), None

    return DashengAudioEncoder


STANDIN_CONFIG = dict(  # audio_encoder_config of mispeech/midashenglm-7b-1021-fp32 (Dasheng 0.6B)
    embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0, qkv_bias=True, init_values=None,
    input_channels=1, n_mels=64, n_fft=512, win_length=512, hop_length=160, f_min=0.0,
    f_max=8000.0, center=True, sample_rate=16000, target_length=1008,
    patch_size=(64, 4), patch_stride=(64, 4))


def _import_reference(ref: str, encoder_cfg: dict):
    """Import the reference modules, with the Hub download replaced by the local stand-in."""
    import types
    if ref not in sys.path:
        sys.path.insert(0, ref)
    import semantic_bottleneck  # noqa: E402  (the reference's file)
    encoder_cls = _build_standin_classes()

    class _NoHubCausalLM:
        @staticmethod
        def from_pretrained(name, **_kwargs):
            return types.SimpleNamespace(audio_encoder=encoder_cls(dict(encoder_cfg)))

    semantic_bottleneck.AutoModelForCausalLM = _NoHubCausalLM
    import losatok  # noqa: E402
    import infer  # noqa: E402
    return semantic_bottleneck, losatok, infer


def _load_state(path: str):
    import torch
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # older files / torch: fall back to a plain load
        state = torch.load(path, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _read_yaml(path: str) -> dict:
    import yaml
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _encoder_cfg(config_path: str, keys=None) -> dict:
    """The stand-in's sizes: the official ones, or the config's `SemanticEncoder.audio_encoder_config`
    (this project's extension of the config file); qkv bias / layer scale from checkpoint keys."""
    y = _read_yaml(config_path)
    cfg = dict(STANDIN_CONFIG)
    extra = y.get("SemanticEncoder.audio_encoder_config") or {}
    unknown = sorted(set(extra) - set(cfg))
    if unknown:
        raise ValueError(f"{config_path}: unknown SemanticEncoder.audio_encoder_config keys {unknown}")
    for k, v in extra.items():
        cfg[k] = tuple(v) if isinstance(v, list) else v
    hidden = y.get("SemanticEncoder.hidden_dim", 512)
    if hidden != 512:
        raise ValueError(f"{config_path}: SemanticEncoder.hidden_dim {hidden}: the reference's "
                         "AudioVAE always builds SemBo with hidden_dim 512")
    if keys is not None:
        p = "semantic_encoder.encoder.blocks.0."
        cfg["qkv_bias"] = (p + "attn.qkv.bias") in keys
        cfg["init_values"] = 1e-5 if (p + "ls1.gamma") in keys else None
    return cfg


def _sem_ckpt_rel(config_path: str):
    """The config's relative `AudioVAE.semantic_encoder_path` (None if absolute)."""
    p = _read_yaml(config_path).get("AudioVAE.semantic_encoder_path", SEM_CKPT_REL)
    return None if os.path.isabs(p) else p


def _rss_now_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def synth_signal(seconds: float, seed: int, samples: int | None = None):
    """Deterministic speech-like test signal: a gliding harmonic tone, syllable-rate amplitude
    modulation, and a little noise; peak about 0.5."""
    import numpy as np
    n = samples if samples is not None else int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t) + 15.0 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((1.0 / k) * np.sin(k * phase + 0.3 * k) for k in range(1, 25))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.7 * t) ** 2
    x = env * x / np.max(np.abs(x))
    x += 0.02 * np.random.default_rng(seed).standard_normal(n)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def worker_make_checkpoint(a) -> dict:
    """Random weights → official-layout .pth files in the work folder."""
    import torch
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    cd = _read_yaml(a.config)["AudioVAE.config_dict"]
    sb, losatok, _infer = _import_reference(a.reference, _encoder_cfg(a.config))
    sem = sb.SemanticEncoder(high_dim=cd["embed_dim"], low_dim=cd["decoder_dim"], hidden_dim=512)
    with torch.no_grad():
        sem.encoder.init_bn.running_mean.fill_(-40.0)
        sem.encoder.init_bn.running_var.fill_(400.0)
    rel = _sem_ckpt_rel(a.config)
    if rel is None:
        raise RuntimeError(f"{a.config}: an absolute AudioVAE.semantic_encoder_path cannot be "
                           "used with random weights")
    os.makedirs(os.path.dirname(os.path.join(a.workdir, rel)) or a.workdir, exist_ok=True)
    torch.save({"state_dict": sem.state_dict()}, os.path.join(a.workdir, rel))
    del sem
    os.chdir(a.workdir)  # the yml names ckpts/semantic_encoder.pth relative to the cwd
    model = losatok.load_model_from_yaml(a.config)
    sd = model.state_dict()
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise RuntimeError(f"non-finite random weights in {bad[:3]}")
    torch.save(sd, a.ckpt_out)
    return {"keys": len(sd), "params": sum(v.numel() for k, v in sd.items() if v.is_floating_point())}


def worker_semantic_subset(a) -> dict:
    """ckpts/semantic_encoder.pth from a given AudioVAE checkpoint (the reference builds the
    model from it before the strict load of the full checkpoint)."""
    import torch
    rel = _sem_ckpt_rel(a.config)
    if rel is None:
        return {"semantic_keys": 0, "note": "absolute semantic_encoder_path in the config: used as is"}
    state = _load_state(a.checkpoint)
    pre = "semantic_encoder."
    sub = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
    if not sub:
        raise RuntimeError(f"{a.checkpoint} has no semantic_encoder.* entries")
    os.makedirs(os.path.dirname(os.path.join(a.workdir, rel)) or a.workdir, exist_ok=True)
    torch.save({"state_dict": sub}, os.path.join(a.workdir, rel))
    return {"semantic_keys": len(sub)}


class RefServer:
    """The reference side of the protocol, in-process, on the loaded reference model."""

    def __init__(self, a, sb, infer, model):
        import torch
        self.a, self.torch, self.sb, self.infer, self.model = a, torch, sb, infer, model
        self.cuda = a.device.startswith("cuda")
        self.stage1 = self.stage2 = None
        self.batches = {}
        here = os.path.dirname(os.path.abspath(__file__))
        if here not in sys.path:
            sys.path.insert(0, here)

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def timed(self, fn):
        self.sync()
        c0, t0 = time.process_time(), time.perf_counter()
        res = fn()
        self.sync()
        t1, c1 = time.perf_counter(), time.process_time()
        return t1 - t0, c1 - c0, res

    def write_wav(self, path, wav):
        import soundfile as sf
        w = wav.detach().float().cpu().reshape(-1).clamp(-1.0, 1.0).numpy()
        sf.write(path, w, self.model.sample_rate, subtype="FLOAT")

    def batch(self, n):
        if n not in self.batches:
            import numpy as np
            x = np.stack([synth_signal(0, self.a.seed + 1 + i, TRAIN_SAMPLES) for i in range(n)])
            self.batches = {n: self.torch.from_numpy(x).to(self.a.device)}  # keep one size only
        return self.batches[n]

    def handle(self, cmd: dict) -> dict:
        torch, infer, model = self.torch, self.infer, self.model
        op = cmd.get("op")
        if op in ("reconstruct_file", "encode_file", "decode_file"):
            src, dst = cmd["input"], cmd["output"]

            def run():
                with torch.inference_mode():
                    if op == "decode_file":
                        feats = torch.load(src, map_location="cpu", weights_only=True)
                        self.write_wav(dst, infer.decode(model, feats["z"]))
                        return {}
                    audio = infer._load_audio(src, model.sample_rate)
                    if op == "reconstruct_file":
                        self.write_wav(dst, infer.reconstruct(model, audio))
                        return {"samples": int(audio.shape[-1])}
                    f = infer.encode(model, audio)
                    torch.save({k: f[k].detach().cpu().contiguous() for k in REF_FEATURES}, dst)
                    return {"samples": int(audio.shape[-1]), "tokens": int(f["z"].shape[1])}
            wall, cpu, extra = self.timed(run)
            return dict(op=op, wall_s=wall, cpu_s=cpu, **extra)
        if op in ("stage1_step", "stage2_step"):
            n = int(cmd["batch"])
            if n < 1:
                raise ValueError("batch must be a positive integer")
            import torch_train_step as tts
            t0 = time.perf_counter()
            se = model.semantic_encoder
            if op == "stage1_step" and self.stage1 is None:
                self.stage1 = tts.Stage1Step(self.sb, se.encoder, se.high_dim, se.low_dim,
                                             se.hidden_dim, device=self.a.device)
            if op == "stage2_step" and self.stage2 is None:
                self.stage2 = tts.Stage2Step(tts.make_stage2_generator(model), device=self.a.device,
                                             d_input=self.a.ref_stage2_forward)
            trainer = self.stage1 if op == "stage1_step" else self.stage2
            x = self.batch(n)
            self.sync()
            setup_s = time.perf_counter() - t0
            with torch.enable_grad():
                wall, cpu, losses = self.timed(lambda: trainer.step(x))
            return {"op": op, "wall_s": wall, "cpu_s": cpu, "setup_s": setup_s, "losses": losses}
        raise ValueError(f"unknown op {op!r}")


def worker_serve(a) -> int:
    """Persistent reference worker: load, say ready, then answer commands on stdin."""
    # the protocol owns the real stdout; anything the reference prints goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def say(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    import gc
    import resource
    import torch
    torch.set_num_threads(a.threads)
    keys = set(_load_state(a.checkpoint).keys())
    sb, _losatok, infer = _import_reference(a.reference, _encoder_cfg(a.config, keys))
    os.chdir(a.workdir)
    t0 = time.perf_counter()
    model = infer.load_losatok(config_path=a.config, model_path=a.checkpoint, device=a.device)
    load_s = time.perf_counter() - t0
    peak_load_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    try:  # give the build/load transients back to the OS
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass
    say({"ready": True, "load_s": load_s, "torch": torch.__version__,
         "torch_threads": torch.get_num_threads(), "device": a.device,
         "parallel_info": torch.__config__.parallel_info().splitlines()[:8],
         "peak_load_gib": peak_load_kib * 1024 / GIB, "rss_loaded_gib": _rss_now_kib() * 1024 / GIB})
    server = RefServer(a, sb, infer, model)
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError as e:
            say({"error": f"not JSON: {e}"})
            continue
        if not isinstance(cmd, dict):
            say({"error": "not a JSON object"})
            continue
        if cmd.get("op") == "quit":
            say({"op": "quit"})
            return 0
        try:
            say(server.handle(cmd))
        except Exception as e:  # reported, the worker stays up
            import traceback
            traceback.print_exc()
            say({"op": cmd.get("op"), "error": f"{type(e).__name__}: {e}"})


def worker_main(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--_worker", required=True)
    p.add_argument("--_result")
    for k in ("reference", "config", "checkpoint", "workdir", "ckpt_out"):
        p.add_argument("--" + k)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ref_stage2_forward", default="shared")
    a = p.parse_args(argv)
    if a._worker == "serve":
        return worker_serve(a)
    fn = {"make-checkpoint": worker_make_checkpoint, "semantic-subset": worker_semantic_subset}[a._worker]
    res = fn(a)
    with open(a._result, "w") as f:
        json.dump(res, f)
    return 0


# ---------------------------------------------------------------------------------------------
# Driver side: machine load
# ---------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TICK_SLACK_S = 2.0 / CLK_TCK      # allowance for the tick granularity of the CPU accounting


def _busy_cores_s() -> float:
    """Busy CPU time of the whole machine so far (core-seconds), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal ...
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / CLK_TCK


def _proc_cpu_s(pid: int):
    """utime + stime of a running process, all threads, from /proc/PID/stat (None if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _proc_status_kib(pid: int, key: str):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _cpu_pressure_s() -> float:
    """Seconds during which some runnable task waited for a CPU (/proc/pressure/cpu, PSI);
    0 where the kernel has no PSI. Recorded for information (µs resolution, unlike the ticks)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


class Snapshot:
    __slots__ = ("t", "busy", "cpus", "me", "psi")

    def __init__(self, workers):
        self.t = time.perf_counter()
        self.busy = _busy_cores_s()
        self.cpus = [w.cpu_s() if w is not None else 0.0 for w in workers]  # None: not started
        self.me = time.process_time()
        self.psi = _cpu_pressure_s()


def load_between(s0: Snapshot, s1: Snapshot):
    """(seconds, foreign core-seconds, [each worker's core-seconds]) between two snapshots:
    foreign = machine busy − the workers − this driver."""
    dt = max(s1.t - s0.t, 1e-9)
    own = [(b or 0.0) - (a or 0.0) for a, b in zip(s0.cpus, s1.cpus)]
    foreign = (s1.busy - s0.busy) - sum(own) - (s1.me - s0.me)
    return dt, foreign, own


def wait_quiet(a, workers, what: str) -> dict:
    """Wait until the others' load and the workers' idle load are ≤ the limit over a window."""
    if not a.wait_quiet:
        return {"waited_s": 0.0}
    start = time.perf_counter()
    while True:
        s0 = Snapshot(workers)
        time.sleep(a.quiet_window)
        s1 = Snapshot(workers)
        dt, foreign, own = load_between(s0, s1)
        f, idle = max(0.0, foreign) / dt, sum(own) / dt
        waited = time.perf_counter() - start
        if f <= a.load_limit and idle <= a.load_limit:
            return {"waited_s": waited, "quiet_foreign": f}
        if waited >= a.quiet_timeout:
            note(f"warning: not quiet after {waited:.0f} s before {what} (other load {f:.2f} "
                 f"cores, workers {idle:.2f}); timing it anyway")
            return {"waited_s": waited, "quiet_foreign": f, "gave_up": True}


# ---------------------------------------------------------------------------------------------
# Driver side: the workers
# ---------------------------------------------------------------------------------------------

class WorkerError(Exception):
    pass


class OpError(Exception):
    pass


class Worker:
    """A persistent worker process speaking the JSON-lines protocol."""

    def __init__(self, side: str, cmd, env, log_path):
        self.side, self.cmd, self.log_path = side, cmd, log_path
        self.replies = queue.Queue()
        self.err_tail = deque(maxlen=40)
        self.log = open(log_path, "a", buffering=1)
        self.log.write(f"$ {' '.join(cmd)}\n")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                self.replies.put(obj)
            else:
                self.log.write(f"[stdout] {line}\n")
        self.replies.put(None)

    def _read_err(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.err_tail.append(line)
            self.log.write(line + "\n")

    def _died(self, what):
        rc = self.proc.poll()
        tail = [l for l in self.err_tail if l.strip()][-3:]
        return WorkerError(f"{self.side} worker {what} (exit status {rc}); last log lines: "
                           f"{' | '.join(tail) or '-'} (full log: {self.log_path})")

    def _next(self, deadline, pred):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.side} worker: no reply in time (log: {self.log_path})")
            try:
                obj = self.replies.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if obj is None:
                raise self._died("exited")
            if pred(obj):
                return obj
            self.log.write(f"[ignored stdout object] {json.dumps(obj)}\n")

    def wait_ready(self, timeout):
        return self._next(time.monotonic() + timeout, lambda o: o.get("ready") is True)

    def request(self, cmd: dict, timeout: float) -> dict:
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("is gone")
        rep = self._next(time.monotonic() + timeout, lambda o: "op" in o or "error" in o)
        if "error" in rep:
            raise OpError(str(rep["error"]))
        for k in ("wall_s", "cpu_s"):
            if not isinstance(rep.get(k), (int, float)):
                raise OpError(f"reply without a numeric {k}: {json.dumps(rep)[:200]}")
        return rep

    def cpu_s(self):
        return _proc_cpu_s(self.pid)

    def hwm_gib(self):
        v = _proc_status_kib(self.pid, "VmHWM")
        return None if v is None else v * 1024 / GIB

    def reset_hwm(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def close(self, timeout=30.0):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(5)
        self.log.close()


def start_worker(a, side, cmd, env, log_path, others) -> tuple:
    """Start one worker on a quiet machine and wait for its ready line."""
    wait_quiet(a, others, f"starting the {side} worker")
    s0 = Snapshot(others + [None])
    w = Worker(side, cmd, env, log_path)
    try:
        ready = w.wait_ready(a.load_timeout)
    except WorkerError:
        w.close(5)
        raise
    s1 = Snapshot(others + [w])
    dt, foreign, own = load_between(s0, s1)
    ready["_start_to_ready_s"] = dt
    ready["_foreign_cores"] = max(0.0, foreign) / dt
    ready["_peak_rss_gib"] = w.hwm_gib()
    if ready["_foreign_cores"] > a.load_limit:
        note(f"warning: other load {ready['_foreign_cores']:.2f} cores while the {side} worker "
             "loaded; its load time is an upper bound")
    return w, ready


# ---------------------------------------------------------------------------------------------
# Driver side: rows
# ---------------------------------------------------------------------------------------------

SIDES = ("ref", "ours")
T0 = time.perf_counter()      # origin of the runs' t_start (driver clock)


def one_run(a, workers, i, cmd, row, timed=True) -> dict:
    """One run of `cmd` on workers[i]; returns its record (raises OpError / WorkerError)."""
    w = workers[i]
    out = cmd.get("output")
    rec = {}
    if timed:
        rec.update(wait_quiet(a, workers, f"{row} ({w.side})"))
    if out and os.path.lexists(out):
        os.remove(out)
    s0 = Snapshot(workers)
    rep = w.request(cmd, a.op_timeout)
    s1 = Snapshot(workers)
    dt, foreign, own = load_between(s0, s1)
    partner = sum(own) - own[i]
    wall, cpu = float(rep["wall_s"]), float(rep["cpu_s"])
    rec.update(t_start=s0.t - T0, wall_s=wall, cpu_s=cpu, cores=cpu / wall if wall > 0 else None,
               driver_wall_s=dt, worker_cpu_s_proc=own[i],
               foreign_cores=max(0.0, foreign) / dt, partner_cores=max(0.0, partner) / dt,
               cpu_pressure=(s1.psi - s0.psi) / dt,
               reply={k: v for k, v in rep.items() if k not in ("op", "wall_s", "cpu_s")})
    rec["contended"] = ((foreign - TICK_SLACK_S) / dt > a.load_limit
                        or (partner - TICK_SLACK_S) / dt > a.load_limit)
    return rec


def run_row(a, workers, row: dict, sink: list) -> dict:
    """Warm-up, then `repeats` alternating rounds; contended runs are discarded and repeated.
    The row's record is appended to `sink` first, so that an abort keeps what was measured."""
    name, cmds = row["name"], row["cmds"]
    res = {"name": name, "key": row["key"], "runs": [[], []], "discarded": [[], []],
           "warmup": [None, None], "peak_rss_gib": [None, None], "error": None}
    sink.append(res)
    hwm_ok = [w.reset_hwm() for w in workers]
    i = 0
    try:
        for i in (0, 1):
            res["warmup"][i] = one_run(a, workers, i, cmds[i], name, timed=False)
        for r in range(a.repeats):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for pos, i in enumerate(order):
                tries = 0
                while True:
                    rec = one_run(a, workers, i, cmds[i], name)
                    rec.update(round=r, position=pos)
                    if rec["contended"] and tries < a.max_retries:
                        tries += 1
                        res["discarded"][i].append(rec)
                        note(f"{name}, {SIDES[i]}: run discarded (other load "
                             f"{rec['foreign_cores']:.2f} cores, idle partner "
                             f"{rec['partner_cores']:.2f}); repeating ({tries}/{a.max_retries})")
                        continue
                    if rec["contended"]:
                        rec["kept_contended"] = True
                        note(f"warning: {name}, {SIDES[i]}: still contended after "
                             f"{a.max_retries} retries; kept and flagged")
                    res["runs"][i].append(rec)
                    break
    except OpError as e:
        side = SIDES[i]
        res["error"] = f"{side}: {e}"
        note(f"{name}: {side} worker answered an error, row omitted: {e}")
    except BaseException:
        res["error"] = "aborted during this row"
        raise
    for i, w in enumerate(workers):
        res["peak_rss_gib"][i] = w.hwm_gib() if hwm_ok[i] else None
    return res


def inference_rows(a, workdir):
    outs = {s: {} for s in SIDES}
    ext = {"ref": "pt", "ours": a.features_ext}
    for s in SIDES:
        outs[s]["recon"] = os.path.join(workdir, f"{s}_recon.wav")
        outs[s]["features"] = os.path.join(workdir, f"{s}_features.{ext[s]}")
        outs[s]["decoded"] = os.path.join(workdir, f"{s}_decoded.wav")
    rows = [
        {"key": "reconstruct", "name": "reconstruct (per file)",
         "cmds": [{"op": "reconstruct_file", "input": a.input, "output": outs[s]["recon"]}
                  for s in SIDES]},
        {"key": "encode", "name": "encode (per file)",
         "cmds": [{"op": "encode_file", "input": a.input, "output": outs[s]["features"]}
                  for s in SIDES]},
        {"key": "decode", "name": "decode (per file)",
         # each side decodes the feature file its own encode wrote
         "cmds": [{"op": "decode_file", "input": outs[s]["features"], "output": outs[s]["decoded"]}
                  for s in SIDES],
         "needs": [{"op": "encode_file", "input": a.input, "output": outs[s]["features"]}
                   for s in SIDES]},
    ]
    return rows, outs


def training_rows(a):
    rows = []
    for n in a.train_batches:
        rows.append({"key": f"stage1_b{n}", "name": f"stage-1 step, batch {n}",
                     "cmds": [{"op": "stage1_step", "batch": n}] * 2})
    for n in a.stage2_batches:
        rows.append({"key": f"stage2_b{n}", "name": f"stage-2 step, batch {n}",
                     "cmds": [{"op": "stage2_step", "batch": n}] * 2})
    return rows


def parity(outs) -> dict:
    """Informative: both sides ran the same weights on the same samples."""
    import numpy as np
    res = {}
    try:
        import soundfile as sf
        r, _ = sf.read(outs["ref"]["recon"], dtype="float32")
        o, _ = sf.read(outs["ours"]["recon"], dtype="float32")
        k = min(len(r), len(o))
        res["recon_max_abs"] = float(np.max(np.abs(r[:k] - o[:k])))
        res["recon_ref_peak"] = float(np.max(np.abs(r[:k])))
        res["recon_len_ref"], res["recon_len_ours"] = len(r), len(o)
    except Exception as e:
        res["recon_error"] = str(e)
    try:
        import torch
        from safetensors.numpy import load_file
        zr = torch.load(outs["ref"]["features"], map_location="cpu", weights_only=True)["z"].numpy()
        zo = load_file(outs["ours"]["features"])["z"]
        res["z_max_abs"] = float(np.max(np.abs(zr.reshape(zo.shape) - zo)))
        res["z_ref_absmax"] = float(np.max(np.abs(zr)))
    except Exception as e:
        res["z_error"] = str(e)
    return res


# ---------------------------------------------------------------------------------------------
# Driver side: main
# ---------------------------------------------------------------------------------------------

def run_oneshot(a, kind, extra, workdir, log_path):
    """A one-shot reference worker (make-checkpoint / semantic-subset)."""
    result = os.path.join(workdir, f"worker-{kind}.json")
    cmd = [a.python, os.path.abspath(__file__), "--_worker", kind, "--_result", result,
           "--reference", a.reference, "--config", a.config, "--workdir", workdir,
           "--threads", str(a.threads), "--seed", str(a.seed), "--device", a.device] + extra
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, env=ref_env(a), stdout=log, stderr=log).returncode
    if rc != 0:
        tail = [l for l in open(log_path, errors="replace").read().splitlines() if l.strip()]
        die(f"reference worker '{kind}' failed (rc {rc}): {tail[-1] if tail else '?'} "
            f"(full log: {log_path})", 1)
    with open(result) as f:
        return json.load(f)


def ref_env(a):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(a.threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ours_env(a):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(a.threads)
    env.pop("LOSATOK_CHECKPOINT", None)
    return env


TINY_CONFIG = """\
# Tiny LoSATok for testing time_reference.py and the workers (official layout + this project's
# SemanticEncoder.* keys, which the reference ignores; the stand-in encoder reads them).
sample_rate: 16000
AudioVAE.sample_rate: 16000
AudioVAE.config_dict: {decoder_depth: 2, decoder_embed_dim: 64, decoder_dim: 16,
  decoder_intermediate_size: 128, depth: 2, dtype: float32, embed_dim: 64, hop_length: 160,
  istft_hop: 320, istft_n_fft: 1280, model_type: dashengtokenizer, n_mels_patch: 128,
  num_heads: 4, transformers_version: 5.1.0, upsample_tokens: 2}
AudioVAE.semantic_encoder_path: ckpts/semantic_encoder.pth
SemanticEncoder.hidden_dim: 512
SemanticEncoder.audio_encoder_config: {embed_dim: 64, depth: 2, num_heads: 4}
"""


def parse_batches(text: str, flag: str):
    if text.strip() == "":
        return []
    try:
        v = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes a comma-separated list of batch sizes, got {text!r}")
    if any(n < 1 for n in v):
        raise UsageError(f"{flag}: batch sizes must be positive, got {text!r}")
    return list(dict.fromkeys(v))


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Time the PyTorch reference LoSATok vs ours (bench_worker), run by run.")
    p.add_argument("--reference", required=True, help="local checkout of wxzyd123/LoSATok")
    p.add_argument("--checkpoint", help="AudioVAE checkpoint (.pth); default: random weights")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", help="audio file (loaded 16 kHz mono the reference's way)")
    src.add_argument("--seconds", type=float, help="length of the synthetic input (default 10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side and row")
    p.add_argument("--worker", default=DEFAULT_WORKER,
                   help="our bench_worker binary (default: this repository's "
                        "target/release/examples/bench_worker)")
    p.add_argument("--worker-config", help="--config for our worker (default: --config when "
                   "given, the tiny config with --tiny, else none)")
    p.add_argument("--features-ext", default="safetensors",
                   help="file extension of our encode output (default safetensors)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N, for both sides (our worker must be built with "
                        "--features cuda for cuda)")
    p.add_argument("--config", help=f"reference config (default: REFERENCE/{DEFAULT_CONFIG})")
    p.add_argument("--tiny", action="store_true",
                   help="tiny random model, for testing the script and the workers (not for numbers)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the noise")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter of the reference's environment (default: this one)")
    p.add_argument("--workdir", help="work folder (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (random checkpoint, logs)")
    p.add_argument("--json", help="also write all raw numbers to this JSON file")
    p.add_argument("--train-batches", default="1,8", help="stage-1 step batch sizes (default 1,8)")
    p.add_argument("--stage2-batches", default="1", help="stage-2 step batch sizes (default 1)")
    p.add_argument("--no-train", action="store_true", help="no training-step rows")
    p.add_argument("--no-inference", action="store_true", help="no reconstruct/encode/decode rows")
    p.add_argument("--ref-stage2-forward", choices=("recompute", "shared"), default="shared",
                   help="reference stage-2 D input: x̂.detach() of the G forward, as our trainer "
                        "does with one micro-batch (default), or a second generator forward "
                        "without autograd (our trainer before its single-pass step)")
    p.add_argument("--no-wait-quiet", dest="wait_quiet", action="store_false",
                   help="do not wait for a quiet machine before each run")
    p.add_argument("--quiet-timeout", type=float, default=120.0, metavar="S",
                   help="give up waiting for a quiet machine after S seconds (default 120)")
    p.add_argument("--quiet-window", type=float, default=1.0, metavar="S",
                   help="the quiet condition must hold over S seconds (default 1)")
    p.add_argument("--load-limit", type=float, default=0.15, metavar="CORES",
                   help="other load allowed, in cores (default 0.15)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="repeats of a contended run before it is kept and flagged (default 3)")
    p.add_argument("--op-timeout", type=float, default=3600.0, help="seconds per command")
    p.add_argument("--load-timeout", type=float, default=1800.0, help="seconds for a worker to load")
    a = p.parse_args(argv)

    a.reference = os.path.abspath(a.reference)
    if not os.path.isdir(a.reference):
        raise UsageError(f"--reference {a.reference} is not a folder")
    missing = [f for f in REF_FILES if not os.path.isfile(os.path.join(a.reference, f))]
    if missing:
        raise UsageError(f"--reference {a.reference} is not a LoSATok checkout "
                         f"(missing {', '.join(missing)})")
    user_config = a.config is not None
    if a.tiny and (a.config or a.checkpoint):
        raise UsageError("--tiny makes its own config and weights: no --config / --checkpoint")
    def existing_file(path, what):
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise UsageError(f"{what} {path} not found")
        return path

    if not a.tiny:
        a.config = existing_file(a.config or os.path.join(a.reference, DEFAULT_CONFIG), "config")
    if a.worker_config:
        a.worker_config = existing_file(a.worker_config, "--worker-config")
    elif user_config:
        a.worker_config = a.config
    if a.checkpoint:
        a.checkpoint = existing_file(a.checkpoint, "--checkpoint")
    if a.input:
        a.input = existing_file(a.input, "--input")
    elif a.seconds is None:
        a.seconds = 10.0
    if a.seconds is not None and not (a.seconds > 0.05 and a.seconds < 24 * 3600):
        raise UsageError(f"--seconds must be a positive duration, got {a.seconds}")
    if a.threads < 1:
        raise UsageError("--threads must be at least 1")
    if a.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if a.max_retries < 0:
        raise UsageError("--max-retries must be ≥ 0")
    if not (a.load_limit > 0):
        raise UsageError("--load-limit must be positive")
    if not (a.quiet_window > 0) or a.quiet_timeout < 0:
        raise UsageError("--quiet-window must be positive and --quiet-timeout ≥ 0")
    a.train_batches = [] if a.no_train else parse_batches(a.train_batches, "--train-batches")
    a.stage2_batches = [] if a.no_train else parse_batches(a.stage2_batches, "--stage2-batches")
    if a.no_inference and not (a.train_batches or a.stage2_batches):
        raise UsageError("--no-inference with no training rows leaves nothing to time")
    a.features_ext = a.features_ext.lstrip(".")
    if not a.features_ext or os.sep in a.features_ext:
        raise UsageError(f"--features-ext must be a file extension, got {a.features_ext!r}")
    exe = shutil.which(a.worker) if os.sep not in a.worker else a.worker
    if not exe or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        raise UsageError(f"--worker {a.worker} is not an executable file "
                         "(build it with `cargo build --release --example bench_worker`)")
    a.worker = os.path.abspath(exe)
    if not (shutil.which(a.python) or os.path.isfile(a.python)):
        raise UsageError(f"--python {a.python} not found")
    if a.device != "cpu" and not a.device.startswith("cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {a.device!r}")
    return a


def main(argv) -> int:
    if argv and argv[0] == "--_worker":
        return worker_main(argv)
    try:
        a = parse_args(argv)
    except UsageError as e:
        die(str(e))

    workdir = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="losatok-timing-")
    os.makedirs(workdir, exist_ok=True)
    try:
        return run(a, workdir)
    finally:
        if a.keep or a.workdir:
            note(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def system_info(a) -> dict:
    def cpu_model():
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or "unknown CPU"

    try:
        la = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        la = "n/a"
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "os": platform.system(),
            "kernel": platform.release(), "python": a.python, "loadavg_start": la,
            "threads": a.threads, "device": a.device}


def run(a, workdir) -> int:
    try:
        import soundfile as sf
    except ImportError:
        die("the soundfile package is needed (pip install soundfile)")
    ref_log = os.path.join(workdir, "ref_worker.log")
    ours_log = os.path.join(workdir, "ours_worker.log")
    setup_log = os.path.join(workdir, "setup.log")

    # input
    if a.input:
        input_desc = a.input
    else:
        a.input = os.path.join(workdir, "input.wav")
        sf.write(a.input, synth_signal(a.seconds, a.seed), SR, subtype="FLOAT")
        input_desc = f"synthetic {a.seconds:g} s (16 kHz float32 wav, seed {a.seed})"
    audio_s = sf.info(a.input).duration

    # config and checkpoint (and the semantic_encoder.pth the reference constructor reads)
    if a.tiny:
        a.config = os.path.join(workdir, "tiny_config.yml")
        with open(a.config, "w") as f:
            f.write(TINY_CONFIG)
        a.worker_config = a.worker_config or a.config
    if a.checkpoint:
        ckpt_desc = a.checkpoint
        note("deriving the semantic_encoder.pth the reference constructor reads")
        run_oneshot(a, "semantic-subset", ["--checkpoint", a.checkpoint], workdir, setup_log)
    else:
        a.checkpoint = os.path.join(workdir, f"losatok_{'tiny_' if a.tiny else ''}random_seed{a.seed}.pth")
        note(f"building random {'TINY' if a.tiny else 'full-size'} weights with the reference "
             f"code (seed {a.seed}) → {a.checkpoint}")
        info = run_oneshot(a, "make-checkpoint", ["--ckpt_out", a.checkpoint], workdir, setup_log)
        ckpt_desc = (f"random (seed {a.seed}){', TINY model' if a.tiny else ''}, {info['keys']} "
                     f"entries, {info['params'] / 1e6:.1f} M params, saved by the reference code")

    system = system_info(a)
    results = {"args": {k: v for k, v in vars(a).items()}, "system": system, "input": input_desc,
               "audio_s": audio_s, "weights": ckpt_desc, "ready": {}, "rows": [],
               "tick_slack_s": TICK_SLACK_S}
    workers = []

    def _terminate(signum, _frame):  # SIGTERM/SIGHUP: stop the workers, keep what was measured
        raise KeyboardInterrupt(f"signal {signum}")

    import signal
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        ref_cmd = [a.python, os.path.abspath(__file__), "--_worker", "serve",
                   "--reference", a.reference, "--config", a.config, "--workdir", workdir,
                   "--checkpoint", a.checkpoint, "--threads", str(a.threads), "--seed", str(a.seed),
                   "--device", a.device, "--ref_stage2_forward", a.ref_stage2_forward]
        note("starting the reference worker (loading the model)")
        ref_w, ready = start_worker(a, "reference", ref_cmd, ref_env(a), ref_log, [])
        workers.append(ref_w)
        results["ready"]["ref"] = ready
        # both sides on the same device: our worker takes --device too (a CUDA build for cuda)
        ours_cmd = [a.worker, "--checkpoint", a.checkpoint, "--device", a.device]
        if a.worker_config:
            ours_cmd += ["--config", a.worker_config]
        note("starting our worker (loading the model)")
        ours_w, ready = start_worker(a, "ours", ours_cmd, ours_env(a), ours_log, [ref_w])
        workers.append(ours_w)
        results["ready"]["ours"] = ready

        rows, outs = ([], None) if a.no_inference else inference_rows(a, workdir)
        rows += training_rows(a)
        for row in rows:
            for i, need in enumerate(row.get("needs", [])):
                if not os.path.exists(need["output"]):   # decode without a preceding encode row
                    try:
                        workers[i].request(need, a.op_timeout)
                    except OpError as e:
                        note(f"{SIDES[i]}: could not make the features to decode: {e}")
            note(f"{row['name']}: 1 warm-up + {a.repeats} runs per side")
            run_row(a, workers, row, results["rows"])
        if outs is not None:
            results["parity"] = parity(outs)
    except WorkerError as e:
        results["aborted"] = str(e)
        note(f"aborted: {e}")
    except KeyboardInterrupt as e:
        results["aborted"] = f"interrupted {e}".strip()
        note(results["aborted"])
    finally:
        for w in workers:
            w.close()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1, default=str)

    report(a, results)
    # 0 only when every requested row was measured on both sides
    return 1 if "aborted" in results or any(r["error"] for r in results["rows"]) else 0


def _fmt(x, nd=None):
    if x is None:
        return "n/a"
    if nd is None:
        nd = 3 if abs(x) < 10 else 2 if abs(x) < 100 else 1
    return f"{x:.{nd}f}"


def summarize(runs):
    walls = [r["wall_s"] for r in runs]
    if not walls:
        return None
    med = statistics.median(walls)
    cores = statistics.median([r["cores"] for r in runs if r["cores"] is not None] or [0.0])
    return {"median": med, "min": min(walls), "max": max(walls), "cores": cores,
            "foreign_max": max(r["foreign_cores"] for r in runs),
            "flagged": sum(1 for r in runs if r.get("kept_contended"))}


def report(a, results):
    sysi = results["system"]
    rr, ro = results["ready"].get("ref", {}), results["ready"].get("ours", {})
    L = []
    L.append("LoSATok timing: PyTorch reference vs ours (bench_worker), persistent workers, "
             "alternating run by run" + ("  [--tiny: TEST MODEL, not for numbers]" if a.tiny else ""))
    L.append(f"machine : {sysi['cpu']}, {sysi['logical_cpus']} logical CPUs, {sysi['os']} "
             f"{sysi['kernel']}; threads={a.threads}; reference device={a.device}; "
             f"load avg at start {sysi['loadavg_start']}")
    extra_ours = {k: v for k, v in ro.items() if not k.startswith("_") and k not in ("ready", "load_s")}
    L.append(f"software: reference torch {rr.get('torch', '?')} ({a.python}); ours {a.worker}"
             + (f" {json.dumps(extra_ours)}" if extra_ours else "")
             + (f" --config {a.worker_config}" if a.worker_config else ""))
    L.append(f"input   : {results['input']}, {results['audio_s']:.2f} s")
    L.append(f"weights : {results['weights']}")
    quiet = (f"waited for other load ≤ {a.load_limit} cores over {a.quiet_window:g} s before "
             f"each run (give up after {a.quiet_timeout:g} s)" if a.wait_quiet
             else "no waiting for a quiet machine")
    L.append(f"method  : median of {a.repeats} runs per side after 1 warm-up each, ref/ours "
             f"alternating (order swapped each round); {quiet}; runs with other load or idle-"
             f"partner CPU > {a.load_limit} cores discarded and repeated (≤ {a.max_retries}×); "
             f"reference stage-2 D input: {a.ref_stage2_forward}")
    L.append("")

    head = ("row", "ref median [min – max] s", "cores", "ours median [min – max] s", "cores",
            "ours/ref", "discarded r/o")
    table, omitted = [], []
    for row in results["rows"]:
        s = [summarize(row["runs"][i]) for i in (0, 1)]
        if row["error"] or s[0] is None or s[1] is None:
            omitted.append(f"{row['name']}: {row['error'] or 'no runs'}")
            continue
        cells = []
        for x in s:
            flag = f" ({x['flagged']} contended)" if x["flagged"] else ""
            cells += [f"{_fmt(x['median'])} [{_fmt(x['min'])} – {_fmt(x['max'])}]{flag}",
                      _fmt(x["cores"], 2)]
        name = row["name"]
        if row["key"] == "reconstruct":
            name += f", RTF {s[0]['median'] / results['audio_s']:.3f} / {s[1]['median'] / results['audio_s']:.3f}"
        table.append((name, cells[0], cells[1], cells[2], cells[3],
                      f"{s[1]['median'] / s[0]['median']:.2f}",
                      f"{len(row['discarded'][0])}/{len(row['discarded'][1])}"))
    if rr and ro:
        table.append(("model load (s, as each worker reports)", _fmt(rr.get("load_s")), "",
                      _fmt(ro.get("load_s")), "",
                      f"{ro['load_s'] / rr['load_s']:.2f}" if rr.get("load_s") and ro.get("load_s") else "", ""))
        table.append(("peak RSS after load (GiB)", _fmt(rr.get("_peak_rss_gib"), 2), "",
                      _fmt(ro.get("_peak_rss_gib"), 2), "", "", ""))
    if results["rows"]:
        peaks = [[x for x in [results["ready"].get(s, {}).get("_peak_rss_gib")]
                  + [r["peak_rss_gib"][i] for r in results["rows"]] if x is not None]
                 for i, s in enumerate(SIDES)]
        table.append(("peak RSS, whole process (GiB)", _fmt(max(peaks[0]) if peaks[0] else None, 2), "",
                      _fmt(max(peaks[1]) if peaks[1] else None, 2), "", "", ""))
    w = [max(len(head[j]), *(len(t[j]) for t in table)) if table else len(head[j]) for j in range(7)]
    L.append("  ".join(h.ljust(w[j]) if j == 0 else h.rjust(w[j]) for j, h in enumerate(head)))
    for t in table:
        L.append("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(t)))
    for o in omitted:
        L.append(f"omitted: {o}")
    n_disc = sum(len(r["discarded"][i]) for r in results["rows"] for i in (0, 1))
    n_flag = sum(1 for r in results["rows"] for i in (0, 1) for x in r["runs"][i] if x.get("kept_contended"))
    L.append(f"discarded runs (other load > {a.load_limit} cores): {n_disc}; kept although "
             f"contended: {n_flag}")
    L.append("")
    if results["rows"]:
        L.append("peak RSS per row (GiB; VmHWM reset before the row, so it includes what the "
                 "process already held):")
        for row in results["rows"]:
            p = row["peak_rss_gib"]
            L.append(f"  {row['name']:<28} ref {_fmt(p[0], 2):>6}   ours {_fmt(p[1], 2):>6}")
        L.append("other load during the kept runs, max (cores): " + "; ".join(
            f"{row['name']} {max([x['foreign_cores'] for x in row['runs'][0]] or [0]):.2f}/"
            f"{max([x['foreign_cores'] for x in row['runs'][1]] or [0]):.2f}"
            for row in results["rows"]))
    L.append("What the numbers include: per-file rows = read the input file + compute + write the "
             "output file, inside the warm worker (no process start, no model load); each side "
             "writes its own formats (ref: wav via soundfile, features {z, mu, logvar} via "
             "torch.save; ours: its wav and feature file); decode reads the feature file its "
             "own encode wrote. Training rows = one optimiser step (stage 2: D update then G "
             "update) on 3 s crops, data prepared before the timer. cores = the worker's own CPU "
             "seconds / wall.")
    if rr:
        L.append(f"reference extra: RSS right after load {_fmt(rr.get('rss_loaded_gib'), 2)} GiB, "
                 f"peak while loading {_fmt(rr.get('peak_load_gib'), 2)} GiB; worker start to ready "
                 f"{_fmt(rr.get('_start_to_ready_s'))} s; torch threads {rr.get('torch_threads')}")
    if ro:
        L.append(f"ours extra: worker start to ready {_fmt(ro.get('_start_to_ready_s'))} s")
    par = results.get("parity")
    if par:
        if "recon_max_abs" in par:
            L.append(f"parity: max |ours − reference| over the reconstruction {par['recon_max_abs']:.2e}"
                     f" (reference peak {par['recon_ref_peak']:.3f}; lengths {par['recon_len_ours']}"
                     f" / {par['recon_len_ref']})"
                     + (f"; over z {par['z_max_abs']:.2e} (|z| max {par['z_ref_absmax']:.3f})"
                        if "z_max_abs" in par else ""))
        else:
            L.append(f"parity check failed: {par.get('recon_error')}")
    if "aborted" in results:
        L.append(f"ABORTED: {results['aborted']}")
    print("\n".join(L))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
