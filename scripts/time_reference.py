#!/usr/bin/env python3
"""Side-by-side timing: the PyTorch reference LoSATok vs our `losatok` CLI, at full size.

    python scripts/time_reference.py --reference /path/to/LoSATok-checkout \
        [--checkpoint losatok_kl1e-2.pth] [--input some.wav | --seconds 10] [--threads 2] \
        [--repeats 3] [--losatok target/release/losatok] [--device cpu]

The reference code is imported from YOUR checkout of https://github.com/wxzyd123/LoSATok
(`--reference`); this project does not ship it. The reference's Python environment is needed
(torch + torchaudio of matching versions, transformers, einops, pyyaml, librosa, soundfile);
run this script with that interpreter, or name it with `--python`.

What is measured
  * Reference: one worker process builds the model the reference's way
    (`infer.load_losatok(config, checkpoint, device)`, i.e. `load_model_from_yaml` + a strict
    `load_state_dict`), loads the input with the reference's `infer._load_audio` (librosa, 16 kHz
    mono), then, under `torch.inference_mode()` and `torch.set_num_threads(threads)`, runs one
    warm-up and `--repeats` timed runs of `infer.encode`, `infer.decode` (on the encoded `z`) and
    `infer.reconstruct`. Reported: median wall time; process CPU time / wall (≈ threads when the
    stage had the cores to itself, lower when other jobs competed); peak RSS of each stage
    (VmHWM, reset via /proc/self/clear_refs before the stage, so it is weights + runtime +
    activations, not the build/load transient); the peak RSS of build + load; build+load time.
  * Ours: the CLI binary, one process per run, with RAYON_NUM_THREADS=threads (Burn's Flex
    backend and its gemm run on rayon's global pool) and LOSATOK_LOG=info. `losatok encode`,
    `losatok decode` (on the encode output) and `losatok reconstruct` each get one warm-up and
    `--repeats` timed runs. Per run: the process wall time (process start, checkpoint load, audio
    read/resample, inference, output write, exit), the CLI's own "model loaded in X s" log line,
    and its own per-file time (the "… X s (real-time factor …)" line), which excludes model
    loading but includes reading the input file and writing the output file. Peak RSS is the
    whole process's (os.wait4 ru_maxrss), so it includes the loaded weights.

Checkpoint
  * `--checkpoint FILE`: an official AudioVAE state dict (raw or {"state_dict": ...}); both sides
    load it. The reference needs a `ckpts/semantic_encoder.pth` to construct the model (it is then
    overwritten by the strict load); the script derives one from FILE's `semantic_encoder.*`
    entries in the work folder.
  * Otherwise: random weights (`--seed`), made by the reference's own constructors, saved as a raw
    AudioVAE state dict (official key layout, 534 entries) in the work folder, and then loaded by
    both sides from that file. The semantic BatchNorm running stats are set to mean -40 dB /
    std 20 dB (plausible for log-mel in dB; the defaults 0/1 are finite too).

Semantic encoder stand-in
  The reference gets its frozen semantic encoder with
  `AutoModelForCausalLM.from_pretrained("mispeech/midashenglm-7b-1021-fp32", trust_remote_code=True)
  .audio_encoder`, i.e. it downloads a 7B audio-LLM and its remote code from the Hugging Face Hub.
  That is replaced, in this script only, by `_DashengAudioEncoder` below: the MiDashengLM audio
  encoder (Dasheng-0.6B size: 32 blocks, 1280 wide, 16 heads) written from the public vLLM/SGLang
  ports, with the same parameter names, shapes and forward (log-power mel in dB with per-item
  top_db, BatchNorm over mel bins, 64x4 patches, 252-token chunks with restarting positions,
  pre-norm ViT blocks with SDPA attention, final LayerNorm). Whether the blocks have a qkv bias or
  layer scale is read from `--checkpoint` when one is given (default: qkv bias, no layer scale).
  Everything else is the reference's own code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GIB = 1024.0 ** 3
SR = 16000
DEFAULT_CONFIG = os.path.join("config", "16k_16k_25Hz_losatok.yml")
REF_FILES = ("losatok.py", "semantic_bottleneck.py", "infer.py",
             os.path.join("modules", "modeling_dasheng_tokenizer.py"),
             os.path.join("modules", "vocos.py"))
SEM_CKPT_REL = os.path.join("ckpts", "semantic_encoder.pth")


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


def _encoder_cfg_from_keys(keys) -> dict:
    cfg = dict(STANDIN_CONFIG)
    p = "semantic_encoder.encoder.blocks.0."
    cfg["qkv_bias"] = (p + "attn.qkv.bias") in keys
    cfg["init_values"] = 1e-5 if (p + "ls1.gamma") in keys else None
    return cfg


def _rss_now_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _busy_cores_s() -> float:
    """Busy CPU time of the whole machine so far (core-seconds), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal ...
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, limit: float = 0.15, window: float = 2.0):
    """Wait (at most max_wait s) until the other processes used < `limit` cores over `window` s.
    Returns the last measured load of the others (cores), or None when not waiting."""
    if max_wait <= 0:
        return None
    end = time.monotonic() + max_wait
    while True:
        b0 = _busy_cores_s()
        time.sleep(window)
        used = (_busy_cores_s() - b0) / window
        if used < limit or time.monotonic() >= end:
            return used


def worker_make_checkpoint(a) -> dict:
    """Random weights → official-layout .pth files in the work folder."""
    import torch
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        import yaml
        cfg = yaml.safe_load(f)
    cd = cfg["AudioVAE.config_dict"]
    sb, losatok, _infer = _import_reference(a.reference, STANDIN_CONFIG)
    sem = sb.SemanticEncoder(high_dim=cd["embed_dim"], low_dim=cd["decoder_dim"], hidden_dim=512)
    with torch.no_grad():
        sem.encoder.init_bn.running_mean.fill_(-40.0)
        sem.encoder.init_bn.running_var.fill_(400.0)
    os.makedirs(os.path.join(a.workdir, "ckpts"), exist_ok=True)
    torch.save({"state_dict": sem.state_dict()}, os.path.join(a.workdir, SEM_CKPT_REL))
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
    state = _load_state(a.checkpoint)
    pre = "semantic_encoder."
    sub = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
    if not sub:
        raise RuntimeError(f"{a.checkpoint} has no semantic_encoder.* entries")
    os.makedirs(os.path.join(a.workdir, "ckpts"), exist_ok=True)
    torch.save({"state_dict": sub}, os.path.join(a.workdir, SEM_CKPT_REL))
    return {"semantic_keys": len(sub), "encoder_cfg": _encoder_cfg_from_keys(set(state.keys()))}


def worker_bench(a) -> dict:
    import resource
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    keys = set(_load_state(a.checkpoint).keys())
    sb, losatok, infer = _import_reference(a.reference, _encoder_cfg_from_keys(keys))
    cuda = a.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    os.chdir(a.workdir)
    t0 = time.perf_counter()
    model = infer.load_losatok(config_path=a.config, model_path=a.checkpoint, device=a.device)
    build_load_s = time.perf_counter() - t0
    peak_build_load_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import gc
    gc.collect()
    try:  # give the build/load transients back to the OS before the per-stage peaks
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass
    rss_loaded_kib = _rss_now_kib()

    t0 = time.perf_counter()
    audio = infer._load_audio(a.input, model.sample_rate)  # librosa, 16 kHz mono
    audio_load_s = time.perf_counter() - t0
    n = audio.shape[-1]

    res = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "torch_parallel_info": torch.__config__.parallel_info().splitlines()[:8],
           "samples": int(n), "build_load_s": build_load_s, "audio_load_s": audio_load_s,
           "peak_build_load_gib": peak_build_load_kib * 1024 / GIB,
           "rss_loaded_gib": rss_loaded_kib * 1024 / GIB, "stages": {}}

    with torch.inference_mode():
        feats = infer.encode(model, audio)
        z = feats["z"]
        wav = infer.decode(model, z)
        sync()
        res["tokens"] = int(z.shape[1])
        res["out_samples"] = int(wav.shape[-1])
        res["finite"] = bool(torch.isfinite(wav).all()) and bool(torch.isfinite(z).all())
        np.save(os.path.join(a.workdir, "ref_recon.npy"), wav.detach().cpu().float().numpy().reshape(-1))
        np.save(os.path.join(a.workdir, "ref_z.npy"), z.detach().cpu().float().numpy())
        del feats, wav
        stages = {
            "encode": lambda: infer.encode(model, audio),
            "decode": lambda: infer.decode(model, z),
            "reconstruct": lambda: infer.reconstruct(model, audio),
        }
        for name, fn in stages.items():
            gc.collect()
            hwm_ok = _reset_hwm()
            walls, cpus = [], []
            others = []
            for _ in range(a.repeats):
                wait_quiet(a.wait_quiet)
                b0, c0, w0 = _busy_cores_s(), time.process_time(), time.perf_counter()
                out = fn()
                sync()
                w1, c1, b1 = time.perf_counter(), time.process_time(), _busy_cores_s()
                del out
                walls.append(w1 - w0)
                cpus.append(c1 - c0)
                # CPU that other processes used meanwhile, in cores (machine busy - this process)
                others.append(max(0.0, (b1 - b0) - (c1 - c0)) / (w1 - w0))
            res["stages"][name] = {"walls": walls, "cpus": cpus, "others": others,
                                   "peak_gib": (_hwm_kib() * 1024 / GIB) if hwm_ok else None}
    return res


def worker_main(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--_worker", required=True)
    p.add_argument("--_result", required=True)
    for k in ("reference", "config", "checkpoint", "input", "workdir", "ckpt_out", "device"):
        p.add_argument("--" + k)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait_quiet", type=float, default=0.0)
    a = p.parse_args(argv)
    fn = {"make-checkpoint": worker_make_checkpoint, "semantic-subset": worker_semantic_subset,
          "bench": worker_bench}[a._worker]
    res = fn(a)
    with open(a._result, "w") as f:
        json.dump(res, f)
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------

def _proc_cpu_s(pid: int):
    """utime + stime of a running process, from /proc/PID/stat (None if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _proc_hwm_kib(pid: int):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_child(cmd, env=None, log_path=None, mark=None):
    """Run a process to completion; return (wall_s, rusage, stdout, stderr, returncode, marks).

    If `mark` (a compiled regex) matches a stderr line, the moment is recorded: the child's
    wall offset and CPU time then, and its VmHWM is reset (/proc/PID/clear_refs) and polled
    until it exits, giving the peak RSS after that moment."""
    import threading
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bufs = {"out": b"", "err": []}
    marks = {}
    done = threading.Event()

    def drain_out():
        bufs["out"] = proc.stdout.read()

    def drain_err():
        for raw in iter(proc.stderr.readline, b""):
            bufs["err"].append(raw)
            if mark is not None and "t" not in marks:
                line = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode(errors="replace"))
                if mark.search(line):
                    marks["t"] = time.perf_counter() - t0
                    marks["cpu"] = _proc_cpu_s(proc.pid)
                    marks["busy"] = _busy_cores_s()
                    try:
                        with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                            f.write("5")
                        marks["hwm_reset"] = True
                    except OSError:
                        marks["hwm_reset"] = False

    def poll_hwm():
        while not done.wait(0.01):
            if marks.get("hwm_reset"):
                v = _proc_hwm_kib(proc.pid)
                if v is not None:
                    marks["hwm_kib"] = v

    th = [threading.Thread(target=drain_out), threading.Thread(target=drain_err),
          threading.Thread(target=poll_hwm)]
    for t in th:
        t.start()
    # wait until the child has exited but reap it ourselves (wait4) to get its own rusage
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    done.set()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    for t in th:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = bufs["out"].decode(errors="replace")
    err = b"".join(bufs["err"]).decode(errors="replace")
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out}{err}\n[rc={proc.returncode} wall={wall:.3f}s]\n")
    return wall, ru, out, err, proc.returncode, marks


def run_worker(a, kind, extra, workdir, log_path):
    result = os.path.join(workdir, f"worker-{kind}.json")
    cmd = [a.python, os.path.abspath(__file__), "--_worker", kind, "--_result", result,
           "--reference", a.reference, "--config", a.config, "--workdir", workdir,
           "--threads", str(a.threads), "--repeats", str(a.repeats), "--seed", str(a.seed),
           "--device", a.device, "--wait_quiet", str(a.wait_quiet)] + extra
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(a.threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    wall, ru, out, err, rc, _ = run_child(cmd, env=env, log_path=log_path)
    if rc != 0:
        last = [l for l in (err or out).strip().splitlines() if l.strip()]
        die(f"reference worker '{kind}' failed (rc {rc}): {last[-1] if last else '?'} "
            f"(full log: {log_path})", 1)
    with open(result) as f:
        res = json.load(f)
    res["_process_wall_s"] = wall
    res["_process_maxrss_gib"] = ru.ru_maxrss * 1024 / GIB
    return res


RTF_LINE = re.compile(r":\s*([0-9.]+) s of audio, (\d+) frames, ([0-9.]+) s "
                      r"\(real-time factor ([0-9.]+)\)")
LOAD_LINE = re.compile(r"model loaded in ([0-9.]+) s")


def run_ours(a, op, args, log_path):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(a.threads)
    env["LOSATOK_LOG"] = "info"
    env.pop("LOSATOK_CHECKPOINT", None)
    cmd = [a.losatok, op] + args + ["--checkpoint", a.checkpoint, "--device", a.device, "--force"]
    wait_quiet(a.wait_quiet)
    b0, s0 = _busy_cores_s(), time.process_time()
    wall, ru, out, err, rc, marks = run_child(cmd, env=env, log_path=log_path, mark=LOAD_LINE)
    b1, s1 = _busy_cores_s(), time.process_time()
    if rc != 0:
        last = [l for l in (err or out).strip().splitlines() if l.strip()]
        die(f"`losatok {op}` failed (rc {rc}): {last[-1] if last else '?'} (log: {log_path})", 1)
    m = RTF_LINE.search(out)
    ml = LOAD_LINE.search(re.sub(r"\x1b\[[0-9;]*m", "", err))
    cpu = ru.ru_utime + ru.ru_stime
    rec = {"wall": wall, "cpu": cpu, "maxrss_gib": ru.ru_maxrss * 1024 / GIB,
           "load_s": float(ml.group(1)) if ml else None,
           # from the moment the CLI logged "model loaded" to the process's exit
           "after_load_wall": (wall - marks["t"]) if "t" in marks else None,
           "after_load_cpu_per_wall": ((cpu - marks["cpu"]) / (wall - marks["t"]))
           if marks.get("cpu") is not None and wall > marks["t"] else None,
           "after_load_peak_gib": marks["hwm_kib"] * 1024 / GIB if "hwm_kib" in marks else None,
           "start_to_loaded_s": marks.get("t"),
           # CPU that other processes used during the run, in cores (machine busy - child - us)
           "others_whole": max(0.0, (b1 - b0) - cpu - (s1 - s0)) / wall}
    # ... and after the "model loaded" line only (the phase the per-file time covers)
    if marks.get("cpu") is not None and "busy" in marks and wall > marks["t"]:
        rec["others"] = max(0.0, (b1 - marks["busy"]) - (cpu - marks["cpu"])) / (wall - marks["t"])
    else:
        rec["others"] = rec["others_whole"]
    if m:
        audio_s, secs, rtf = float(m.group(1)), float(m.group(3)), float(m.group(4))
        # the CLI prints seconds with 2 decimals and the RTF with 3; take the finer of the two
        rec["op_s"] = rtf * audio_s if audio_s * 0.0005 < 0.005 else secs
    else:
        rec["op_s"] = None
    return rec


def synth_signal(seconds: float, seed: int):
    """Deterministic speech-like test signal: a gliding harmonic tone, syllable-rate amplitude
    modulation, and a little noise; peak about 0.5."""
    import numpy as np
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t) + 15.0 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((1.0 / k) * np.sin(k * phase + 0.3 * k) for k in range(1, 25))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.7 * t) ** 2
    x = env * x / np.max(np.abs(x))
    x += 0.02 * np.random.default_rng(seed).standard_normal(n)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def ratio(ours, ref):
    return "n/a" if (ours is None or ref is None or ref == 0) else f"{ours / ref:.2f}"


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Time the PyTorch reference LoSATok vs our losatok CLI (full size).")
    p.add_argument("--reference", required=True, help="local checkout of wxzyd123/LoSATok")
    p.add_argument("--checkpoint", help="AudioVAE checkpoint (.pth); default: random weights")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", help="audio file (loaded 16 kHz mono the reference's way)")
    src.add_argument("--seconds", type=float, help="length of the synthetic input (default 10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--losatok", default="target/release/losatok", help="our CLI binary")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both sides)")
    p.add_argument("--config", help=f"reference config (default: REFERENCE/{DEFAULT_CONFIG})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the noise")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter of the reference's environment (default: this one)")
    p.add_argument("--workdir", help="work folder (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (random checkpoint, logs)")
    p.add_argument("--skip-ours", action="store_true", help="time the reference only")
    p.add_argument("--skip-reference", action="store_true", help="time our CLI only")
    p.add_argument("--json", help="also write all raw numbers to this JSON file")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each timed run, wait up to SECONDS until other processes use "
                        "< 0.15 cores (for shared machines; default 0: do not wait)")
    a = p.parse_args(argv)

    a.reference = os.path.abspath(a.reference)
    if not os.path.isdir(a.reference):
        raise UsageError(f"--reference {a.reference} is not a folder")
    missing = [f for f in REF_FILES if not os.path.isfile(os.path.join(a.reference, f))]
    if missing:
        raise UsageError(f"--reference {a.reference} is not a LoSATok checkout "
                         f"(missing {', '.join(missing)})")
    a.config = os.path.abspath(a.config or os.path.join(a.reference, DEFAULT_CONFIG))
    if not os.path.isfile(a.config):
        raise UsageError(f"config {a.config} not found")
    if a.checkpoint:
        a.checkpoint = os.path.abspath(a.checkpoint)
        if not os.path.isfile(a.checkpoint):
            raise UsageError(f"--checkpoint {a.checkpoint} not found")
    if a.input:
        a.input = os.path.abspath(a.input)
        if not os.path.isfile(a.input):
            raise UsageError(f"--input {a.input} not found")
    elif a.seconds is None:
        a.seconds = 10.0
    if a.seconds is not None and not (a.seconds > 0.05 and a.seconds < 24 * 3600):
        raise UsageError(f"--seconds must be a positive duration, got {a.seconds}")
    if a.threads < 1:
        raise UsageError("--threads must be at least 1")
    if a.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if a.skip_ours and a.skip_reference:
        raise UsageError("--skip-ours and --skip-reference together leave nothing to time")
    if not a.skip_ours:
        exe = shutil.which(a.losatok) if os.sep not in a.losatok else a.losatok
        if not exe or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
            raise UsageError(f"--losatok {a.losatok} is not an executable file "
                             "(build it with `cargo build --release`)")
        a.losatok = os.path.abspath(exe)
    if not (shutil.which(a.python) or os.path.isfile(a.python)):
        raise UsageError(f"--python {a.python} not found")
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
    log_path = os.path.join(workdir, "log.txt")
    try:
        return run(a, workdir, log_path)
    finally:
        if a.keep or a.workdir:
            note(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(a, workdir, log_path) -> int:
    import numpy as np
    try:
        import soundfile as sf
    except ImportError:
        die("the soundfile package is needed (pip install soundfile)")

    # input
    if a.input:
        input_path, input_desc = a.input, a.input
    else:
        input_path = os.path.join(workdir, "input.wav")
        sf.write(input_path, synth_signal(a.seconds, a.seed), SR, subtype="FLOAT")
        input_desc = f"synthetic {a.seconds:g} s (16 kHz float32 wav, seed {a.seed})"
    a.input = input_path

    # checkpoint (and the semantic_encoder.pth the reference constructor reads)
    if a.checkpoint:
        ckpt_desc = a.checkpoint
        if not a.skip_reference:
            note("deriving ckpts/semantic_encoder.pth from the checkpoint for the reference")
            run_worker(a, "semantic-subset", ["--checkpoint", a.checkpoint], workdir, log_path)
    else:
        a.checkpoint = os.path.join(workdir, f"losatok_random_seed{a.seed}.pth")
        note("building random full-size weights with the reference code (seed "
             f"{a.seed}) → {a.checkpoint}")
        info = run_worker(a, "make-checkpoint", ["--ckpt_out", a.checkpoint], workdir, log_path)
        ckpt_desc = (f"random (seed {a.seed}), {info['keys']} entries, "
                     f"{info['params'] / 1e6:.1f} M params, saved by the reference code")

    ref = None
    if not a.skip_reference:
        la = loadavg()
        note(f"timing the reference ({a.repeats} runs per stage after 1 warm-up; load avg {la})")
        ref = run_worker(a, "bench", ["--checkpoint", a.checkpoint, "--input", a.input],
                         workdir, log_path)
        ref["_loadavg_before"] = la

    ours = None
    if not a.skip_ours:
        la = loadavg()
        note(f"timing our CLI ({a.repeats} runs per command after 1 warm-up; load avg {la})")
        feats = os.path.join(workdir, "ours_features.safetensors")
        recon = os.path.join(workdir, "ours_recon.wav")
        decoded = os.path.join(workdir, "ours_decoded.wav")
        cmds = {
            "encode": ["encode", [a.input, feats]],
            "decode": ["decode", [feats, decoded]],
            "reconstruct": ["reconstruct", [a.input, recon]],
        }
        ours = {"_loadavg_before": la, "stages": {}}
        try:
            ours["version"] = subprocess.run([a.losatok, "--version"], capture_output=True,
                                             text=True, timeout=60).stdout.strip()
        except Exception:
            ours["version"] = "?"
        for name, (op, args) in cmds.items():
            run_ours(a, op, args, log_path)  # warm-up (also makes the features for decode)
            ours["stages"][name] = [run_ours(a, op, args, log_path) for _ in range(a.repeats)]

    # sanity: both sides ran the same weights on the same samples
    parity = None
    if ref is not None and ours is not None:
        try:
            r = np.load(os.path.join(workdir, "ref_recon.npy"))
            o, _ = sf.read(recon, dtype="float32")
            k = min(len(r), len(o))
            parity = {"max_abs": float(np.max(np.abs(r[:k] - o[:k]))),
                      "ref_peak": float(np.max(np.abs(r[:k]))), "len_ref": len(r), "len_ours": len(o)}
        except Exception as e:  # informative only
            parity = {"error": str(e)}

    report(a, input_desc, ckpt_desc, ref, ours, parity)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ref": ref, "ours": ours, "parity": parity, "args": vars(a)}, f, indent=1)
    return 0


def report(a, input_desc, ckpt_desc, ref, ours, parity):
    if ref is not None:
        audio_s = ref["samples"] / SR
    else:
        import soundfile as sf
        audio_s = sf.info(a.input).duration

    def rstage(stage):
        """reference: (median wall, CPU/wall of the median-wall run, peak GiB)"""
        if ref is None:
            return None, None, None
        s = ref["stages"][stage]
        w = med(s["walls"])
        cw = med([c / x for c, x in zip(s["cpus"], s["walls"]) if x])
        return w, cw, s["peak_gib"]

    def ostage(stage, key):
        if ours is None:
            return None
        return med([r[key] for r in ours["stages"][stage]])

    rows = []
    for stage in ("encode", "decode", "reconstruct"):
        w = rstage(stage)[0]
        o = ostage(stage, "op_s")
        rows.append((f"{stage} (s)", fmt(w), fmt(o), ratio(o, w)))
    w = rstage("reconstruct")[0]
    o = ostage("reconstruct", "op_s")
    rows.append(("reconstruct RTF", fmt(w / audio_s if w else None, 3),
                 fmt(o / audio_s if o else None, 3), ratio(o, w)))
    for stage in ("encode", "decode", "reconstruct"):
        rows.append((f"CPU/wall, {stage}", fmt(rstage(stage)[1]),
                     fmt(ostage(stage, "after_load_cpu_per_wall")), ""))
    def others(side):
        if side is None:
            return "n/a"
        if side is ref:
            xs = [x for st in ref["stages"].values() for x in st.get("others", [])]
        else:
            xs = [r["others"] for st in ours["stages"].values() for r in st]
        return f"{statistics.median(xs):.2f}/{max(xs):.2f}" if xs else "n/a"

    rows.append(("other processes' CPU, median/max (cores)", others(ref), others(ours), ""))
    ref_load = ref["build_load_s"] if ref else None
    our_load = ostage("reconstruct", "load_s")
    rows.append(("model build+load (s)", fmt(ref_load), fmt(our_load), ratio(our_load, ref_load)))
    rows.append(("reconstruct, whole CLI process (s)", "n/a",
                 fmt(ostage("reconstruct", "wall")), ""))
    ref_inf = rstage("reconstruct")[2]
    our_inf = ostage("reconstruct", "after_load_peak_gib")
    rows.append(("peak RSS, inference (GiB)", fmt(ref_inf), fmt(our_inf), ratio(our_inf, ref_inf)))
    ref_proc = max([x for x in (ref_inf, ref["peak_build_load_gib"]) if x is not None]) if ref else None
    our_proc = ostage("reconstruct", "maxrss_gib")
    rows.append(("peak RSS, load + reconstruct (GiB)", fmt(ref_proc), fmt(our_proc),
                 ratio(our_proc, ref_proc)))

    w0 = max(len(r[0]) for r in rows)
    tv = ref["torch"] if ref else "(not run)"
    L = []
    L.append("LoSATok timing: PyTorch reference vs our losatok CLI (full size, float32)")
    L.append(f"machine : {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
             f"{platform.release()}; threads={a.threads}; device={a.device}")
    L.append(f"software: reference torch {tv} ({a.python}); ours: "
             f"{ours['version'] if ours else '(not run)'} ({a.losatok if ours else '-'})")
    L.append(f"input   : {input_desc}, {audio_s:.2f} s"
             + (f", {ref['tokens']} tokens -> {ref['out_samples']} output samples" if ref else ""))
    L.append(f"weights : {ckpt_desc}")
    L.append(f"runs    : median of {a.repeats} after 1 warm-up; 1-min load avg before: reference "
             f"{ref['_loadavg_before'] if ref else '-'}, ours {ours['_loadavg_before'] if ours else '-'}")
    L.append("")
    L.append(f"{'':<{w0}}  {'reference':>10}  {'ours':>10}  {'ours/ref':>8}")
    for name, r_, o_, q in rows:
        L.append(f"{name:<{w0}}  {r_:>10}  {o_:>10}  {q:>8}")
    L.append("")
    L.append("What the numbers include:")
    L.append("  reference  encode/decode/reconstruct = infer.encode / infer.decode(z) / "
             "infer.reconstruct in one process, tensors in memory, no file I/O.")
    L.append("             CPU/wall = process CPU time / wall of the stage (about `threads` when it "
             "had the cores to itself).")
    L.append("             build+load = infer.load_losatok (construct from the yml incl. the stand-in "
             "semantic encoder, torch.load, strict load_state_dict).")
    L.append("             peak RSS inference = VmHWM of the reconstruct stage (reset before it); "
             "load + reconstruct = max(that, peak while building/loading).")
    L.append("  both       other processes' CPU = machine busy time (/proc/stat) minus the timed "
             "process's own CPU, per timed run, in cores (ours: after \"model loaded\"); "
             "above ~0.1 the run was contended.")
    L.append("  ours       encode/decode/reconstruct = the CLI's own per-file time (its \"... s "
             "(real-time factor ...)\" line): no process start, no model load, but it includes")
    L.append("             reading the input file (encode/reconstruct: wav; decode: the .safetensors "
             "from encode) and writing the output (.safetensors / wav).")
    L.append("             CPU/wall = from the \"model loaded\" log line to exit (inference + I/O + "
             "teardown).  build+load = its \"model loaded in X s\" log line.")
    L.append("             whole CLI process = wall of `losatok reconstruct`: start, load, I/O, "
             "inference, exit.")
    L.append("             peak RSS inference = VmHWM after the \"model loaded\" line (reset from "
             "outside, polled every 10 ms); load + reconstruct = ru_maxrss of the process.")
    if ref is not None:
        L.append(f"reference extra: RSS right after load {ref['rss_loaded_gib']:.2f} GiB; "
                 f"per-stage peaks encode {fmt(ref['stages']['encode']['peak_gib'])}, decode "
                 f"{fmt(ref['stages']['decode']['peak_gib'])} GiB; first librosa load "
                 f"{ref['audio_load_s']:.2f} s; outputs finite: {ref['finite']}.")
    if ours is not None:
        L.append(f"ours extra: start -> \"model loaded\" {fmt(ostage('reconstruct', 'start_to_loaded_s'))} s "
                 f"(reconstruct runs); peak RSS inference: encode "
                 f"{fmt(ostage('encode', 'after_load_peak_gib'))}, decode "
                 f"{fmt(ostage('decode', 'after_load_peak_gib'))} GiB.")
    if parity:
        if "error" in parity:
            L.append(f"parity check failed: {parity['error']}")
        else:
            L.append(f"parity: max |ours - reference| over the reconstruction = "
                     f"{parity['max_abs']:.2e} (reference peak {parity['ref_peak']:.3f}; "
                     f"lengths {parity['len_ours']} / {parity['len_ref']})")
    if ref is not None or ours is not None:
        L.append("all runs (s):")
        for stage in ("encode", "decode", "reconstruct"):
            parts = []
            if ref is not None:
                parts.append("ref " + " ".join(f"{x:.2f}" for x in ref["stages"][stage]["walls"]))
            if ours is not None:
                rs_ = ours["stages"][stage]
                parts.append("ours " + " ".join(fmt(r["op_s"]) for r in rs_) + " (process "
                             + " ".join(f"{r['wall']:.2f}" for r in rs_) + ", load "
                             + " ".join(fmt(r["load_s"]) for r in rs_) + ")")
            L.append(f"  {stage:<11} " + "; ".join(parts))
    print("\n".join(L))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
