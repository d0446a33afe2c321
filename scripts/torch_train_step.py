#!/usr/bin/env python3
"""One LoSATok training step in PyTorch, built on the reference's own modules, for timing.

Used by `time_reference.py` (its reference worker times `stage1_step` / `stage2_step` with the
classes here) and runnable on its own as a self-test at a tiny size:

    python scripts/torch_train_step.py --selftest --reference /path/to/LoSATok-checkout \
        [--fixtures /path/to/fixtures/losses] [--threads 1]

The reference modules (`semantic_bottleneck.py`, `losatok.py`, `modules/…`) are imported at run
time from YOUR checkout of https://github.com/wxzyd123/LoSATok; nothing of it is copied here.
The losses and the discriminator that the reference does not ship are written here from this
project's loss specification, `loss-spec.md` (sections cited as §N below).

Stage 1 (`Stage1Step`), one step = forward, backward, optimiser step:
  frozen semantic encoder (eval, under no_grad) → the reference's `SemanticBottleneck`
  (compressor 1280→512→128 and restorer 128→512→1280) → the reference's
  `semantic_bottleneck_loss` components, combined as `L_SemBo = λ_recon·L_recon + L_tr` with
  λ_recon = 1e3 (§2) → backward → global-norm clipping at 1.0 → AdamW (β 0.8/0.99, ε 1e-8,
  weight decay 0.01, lr 1e-4, §2 and §8) → warm-up + cosine lr schedule step.

Stage 2 (`Stage2Step`), one step = discriminator update, then generator update (§8):
  generator = the reference `AudioVAE` (its `forward`: frozen semantic encoder + SemBo under
  no_grad, acoustic branch, fc_a, KL head with the ±20 logvar clamp and reparameterised z,
  DashengTokenizer decoder); its own `vae/semantic_loss` (= L_H + L_L, §3.1) and `vae/kl_loss`
  (§3.2) are used as returned.
  * D update: x̂ without gradient to the generator; the MFD of §5 (6 branches, hops 32…1024,
    channels 64…512, 'double' domain, weight norm) on x and sg(x̂); hinge L_D with the mean over
    sub-discriminators (§7); clipping at 1.0; AdamW as above (lr 1e-4 → 1e-5 cosine, §8).
  * G update through the *updated* D, whose parameters are kept out of the graph
    (requires_grad off, §9.10): `L_G = 45·L_mel + 45·(L_H + L_L) + 1e-3·L_KL + 1·L_fm + 1·L_adv`
    (§3), L_mel = DAC multi-scale mel (7 scales, §3.3), hinge L_adv and Vocos-reduction L_fm
    (§7) with the real feature maps detached; clipping at 1.0; AdamW.
  * The GAN is active from the first step (gan_start_step 0, §8). float32 throughout.

What is the same as our Burn trainer (`losatok-train`, `Stage1Config::paper()` /
`Stage2Config::paper()`), by construction:
  * the losses, their weights and reductions (λ_recon 1e3; 45/45/1e-3/1/1; hinge with the mean
    over the 6 MFD branches; FM = Σ_layers / K; no KL free bits, semantic_loss_mode "both");
  * the MFD configuration, the DAC mel configuration, 3 s (48 000-sample) crops, float32;
  * the order of a stage-2 step: D first on the detached reconstruction, then G through the
    updated D. With `d_input="shared"` (the default) one generator forward with autograd gives
    x̂.detach() for D and the same graph for the G loss, as our trainer does with one
    micro-batch (and DAC/Vocos do). `d_input="recompute"` gets D's x̂ from a separate generator
    forward without autograd, as our trainer did before its single-pass step (and still does
    with gradient accumulation), so the frozen encoder and the generator run twice per step;
  * AdamW β/ε/weight decay, global-norm clipping at 1.0 for G and D (both trainers use
    `max_norm / (‖g‖ + 1e-6)`), a per-step warm-up + cosine lr;
  * the frozen parts (semantic encoder, SemBo in stage 2) in eval mode with no gradient.

What is not identical (none of it changes the amount of work in a step noticeably):
  * the kernels: torch's autograd, conv, STFT and AdamW (its default per-parameter loop on CPU,
    `foreach` on CUDA) against Burn's; torch's weight-norm parametrisation recomputes w = g·v/‖v‖
    on each forward, as ours does;
  * the noise ε of the reparameterisation: torch.randn_like here; ours draws seeded per-row
    noise (in "recompute" mode the two passes here draw different ε, ours the same);
  * the starting weights: in the timing worker the stage-2 generator is a copy of the loaded
    checkpoint's trainable parts sharing the loaded (frozen) semantic encoder, and SemBo is freshly
    initialised by the reference class; values do not change the cost;
  * no fault guard (our trainer checks losses and gradient norms for finiteness and skips bad
    steps; the norms are computed here too), no gradient accumulation, no all-reduce (ours
    runs a single-process no-op collective), no metrics, no data loader: the batch is given
    (the timing worker pre-generates it, untimed);
  * the losses are read back as Python floats after each step (ours reads them back as host
    scalars too).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

SR = 16000

# §3.3: DAC MelSpectrogramLoss, conf/base.yml (window = n_fft, hop = window / 4)
DAC_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_N_MELS = (5, 10, 20, 40, 80, 160, 320)
# §5: X-Codec v1 MultiFrequencyDiscriminator at 16 kHz
MFD_HOPS = (32, 64, 128, 256, 512, 1024)
MFD_CHANNELS = (64, 128, 256, 512, 512, 512)
# §3, §2: loss weights of the paper; λ_KL default of our trainer (1e-3)
W_MEL, W_SEM, W_KL, W_FM, W_ADV = 45.0, 45.0, 1e-3, 1.0, 1.0
LAMBDA_RECON = 1e3


class OptimSettings:
    """AdamW + warm-up/cosine schedule (§2, §8; our `OptimConfig`)."""

    def __init__(self, lr=1e-4, min_lr=0.0, warmup=1000, total=100_000, betas=(0.8, 0.99),
                 eps=1e-8, weight_decay=0.01, grad_clip=1.0):
        self.lr, self.min_lr, self.warmup, self.total = lr, min_lr, warmup, total
        self.betas, self.eps, self.weight_decay, self.grad_clip = betas, eps, weight_decay, grad_clip

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * p))

    def make(self, params):
        params = list(params)
        opt = torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self.lr_at(s) / self.lr)
        return params, opt, sched


STAGE1_OPTIM = OptimSettings(lr=1e-4, min_lr=0.0, warmup=1000, total=100_000)
STAGE2_OPTIM = OptimSettings(lr=1e-4, min_lr=1e-5, warmup=1000, total=1_000_000)


# ---------------------------------------------------------------------------------------------
# §3.3 multi-scale mel loss (DAC configuration)
# ---------------------------------------------------------------------------------------------

class DacMelLoss(nn.Module):
    """L_mel = Σ_s mean |log10(max(fb_s·|STFT_s(x̂)|, 1e-5)) − log10(max(fb_s·|STFT_s(x)|, 1e-5))|.

    Periodic Hann, hop W/4, centred with reflect padding, no normalisation (§3.3 step 1); plain
    complex magnitude, whose backward is 0 at |X| = 0 (step 2); librosa Slaney filterbanks,
    built in float64 and cast to float32 (step 3); pow 1, clamp 1e-5 (step 4); log term only
    (mag_weight 0, step 5); plain sum over the scales (step 6)."""

    def __init__(self, windows=DAC_WINDOWS, n_mels=DAC_N_MELS, sample_rate=SR):
        super().__init__()
        import librosa
        import numpy as np
        self.windows = tuple(windows)
        for w, m in zip(windows, n_mels):
            fb = librosa.filters.mel(sr=sample_rate, n_fft=w, n_mels=m, fmin=0.0,
                                     fmax=sample_rate / 2, htk=False, norm="slaney",
                                     dtype=np.float64)
            self.register_buffer(f"fb_{w}", torch.from_numpy(fb).float(), persistent=False)
            self.register_buffer(f"win_{w}", torch.hann_window(w, periodic=True),
                                 persistent=False)

    def mel(self, x, w):
        spec = torch.stft(x, n_fft=w, hop_length=w // 4, win_length=w,
                          window=getattr(self, f"win_{w}"), center=True, pad_mode="reflect",
                          normalized=False, onesided=True, return_complex=True)
        return getattr(self, f"fb_{w}") @ spec.abs()           # [B, M, T]

    def per_scale(self, x_hat, x):
        x_hat, x = x_hat.reshape(x_hat.shape[0], -1), x.reshape(x.shape[0], -1)
        out = []
        for w in self.windows:
            a = torch.log10(self.mel(x_hat, w).clamp(min=1e-5))
            b = torch.log10(self.mel(x, w).clamp(min=1e-5))
            out.append((a - b).abs().mean())
        return out

    def forward(self, x_hat, x):
        return sum(self.per_scale(x_hat, x))


# ---------------------------------------------------------------------------------------------
# §5 MFD: X-Codec v1 MultiFrequencyDiscriminator, written from the spec
# ---------------------------------------------------------------------------------------------

def mfd_filterbank(n_freqs: int, sample_rate: int = SR) -> torch.Tensor:
    """§5.1: square HTK 'mel' re-binning matrix [F (bins), F (bands)], float32, floored at 1e-6,
    no area normalisation."""
    f = torch.linspace(0.0, sample_rate / 2, n_freqs)
    mel_max = 2595.0 * math.log10(1.0 + (sample_rate / 2) / 700.0)
    m_pts = torch.linspace(0.0, mel_max, n_freqs + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    delta = f_pts[1:] - f_pts[:-1]                            # Δ_m, [F + 1]
    slopes = f_pts.unsqueeze(0) - f.unsqueeze(1)              # f_pts[m] − f, [F, F + 2]
    down = -slopes[:, :-2] / delta[:-1]
    up = slopes[:, 2:] / delta[1:]
    return torch.minimum(down, up).clamp(1e-6, 1.0)


class MfdBranch(nn.Module):
    """One sub-discriminator: the 'double'-domain input of §5.1 and the 7-block conv stack of §5.2."""

    STRIDES = ((1, 1), (2, 2), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1))

    def __init__(self, hop: int, channels: int, sample_rate: int = SR):
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm
        self.hop, self.n_fft = hop, 4 * hop
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True),
                             persistent=False)
        self.register_buffer("fb", mfd_filterbank(2 * hop + 1, sample_rate), persistent=False)
        c = channels
        chans = (2, c // 32, c // 16, c // 8, c // 4, c // 2, c, 1)
        if min(chans) < 1:
            raise ValueError(f"MFD hidden channels {c} must be at least 32")
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[j], chans[j + 1], 3, stride=self.STRIDES[j]), dim=0)
            for j in range(7))

    def features(self, x):
        """[B, N] → [B, 2, F, T]: channel 0 the re-binned magnitude, channel 1 its clamped log."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(x.float(), n_fft=self.n_fft, hop_length=self.hop,
                              win_length=self.n_fft, window=self.window, center=True,
                              pad_mode="reflect", normalized=True, onesided=True,
                              return_complex=True)
            mag = torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-7))
            mel = torch.matmul(mag.transpose(1, 2), self.fb).transpose(1, 2)   # Σ_f mag·fb[f, m]
            log = torch.clamp((20.0 * torch.log10(mel) - 20.0 + 100.0) / 100.0, 0.0, 1.0)
            return torch.stack([mel, log], dim=1)

    def forward(self, x):
        h = self.features(x)
        fmaps = []
        for j, conv in enumerate(self.convs):
            if j > 0:
                h = F.leaky_relu(h, 0.2)
                fmaps.append(h)               # post-LeakyReLU output of block j − 1 (§5.2)
            h = conv(F.pad(h, (1, 1, 1, 1), mode="reflect"))
        return h, fmaps                       # logits [B, 1, F', T'], 6 feature maps


class MultiFrequencyDiscriminator(nn.Module):
    """§5: one branch per hop; forward(wave) → (logits[K], fmaps[K][6])."""

    def __init__(self, hops=MFD_HOPS, channels=MFD_CHANNELS, sample_rate=SR):
        super().__init__()
        self.branches = nn.ModuleList(MfdBranch(h, c, sample_rate) for h, c in zip(hops, channels))

    def forward(self, wave):
        x = wave.reshape(wave.shape[0], -1)
        outs = [b(x) for b in self.branches]
        return [o[0] for o in outs], [o[1] for o in outs]


# §7: hinge losses, mean over sub-discriminators; FM with the Vocos reduction
def hinge_d_loss(real_logits, fake_logits):
    k = len(real_logits)
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean()
               for r, f in zip(real_logits, fake_logits)) / k


def hinge_g_loss(fake_logits):
    return sum(F.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_fmaps, fake_fmaps):
    k = len(real_fmaps)
    return sum((fk - rk.detach()).abs().mean()
               for rs, fs in zip(real_fmaps, fake_fmaps) for rk, fk in zip(rs, fs)) / k


def _f(t) -> float:
    return t.detach().item()


def _clip(params, max_norm):
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


# ---------------------------------------------------------------------------------------------
# Stage 1
# ---------------------------------------------------------------------------------------------

class Stage1Step:
    """SemBo training on a frozen semantic encoder (§2).

    `sb` is the reference's `semantic_bottleneck` module; `encoder` the frozen encoder (called as
    `encoder(audio)[0]`, the reference's convention)."""

    def __init__(self, sb, encoder, high_dim, low_dim, hidden_dim=512, device="cpu",
                 lambda_recon=LAMBDA_RECON, optim: OptimSettings = STAGE1_OPTIM):
        self.sb, self.encoder, self.lambda_recon = sb, encoder, lambda_recon
        self.encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.sembo = sb.SemanticBottleneck(high_dim, low_dim, hidden_dim).to(device).train()
        self.params, self.opt, self.sched = optim.make(self.sembo.parameters())
        self.grad_clip = optim.grad_clip

    def step(self, audio):
        with torch.no_grad():
            emb = self.encoder(audio)[0]
        emb = emb.detach()
        z, recon = self.sembo(emb)
        parts = self.sb.semantic_bottleneck_loss(emb, recon, z)
        loss = self.lambda_recon * parts["mse_loss"] + parts["relation_loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = _clip(self.params, self.grad_clip)
        self.opt.step()
        self.sched.step()
        return {"loss": _f(loss), "recon": _f(parts["mse_loss"]),
                "tr": _f(parts["relation_loss"]), "grad_norm": norm}


# ---------------------------------------------------------------------------------------------
# Stage 2
# ---------------------------------------------------------------------------------------------

def make_stage2_generator(model):
    """A trainable copy of an `AudioVAE` that shares (does not copy) its frozen semantic encoder."""
    sem = model.semantic_encoder
    model.semantic_encoder = None
    try:
        gen = copy.deepcopy(model)
    finally:
        model.semantic_encoder = sem
    gen.semantic_encoder = sem
    gen.train()
    gen.freeze_semantic_encoder()          # the reference's own: eval + requires_grad off
    for name, p in gen.named_parameters():
        if not name.startswith("semantic_encoder."):
            p.requires_grad_(True)
    return gen


class Stage2Step:
    """The LoSATok GAN step (§3, §5, §7, §8): D update, then G update through the updated D."""

    def __init__(self, generator, device="cpu", d_input="shared", mfd_hops=MFD_HOPS,
                 mfd_channels=MFD_CHANNELS, optim: OptimSettings = STAGE2_OPTIM):
        if d_input not in ("recompute", "shared"):
            raise ValueError(f"d_input must be 'recompute' or 'shared', got {d_input!r}")
        self.gen, self.d_input = generator, d_input
        self.disc = MultiFrequencyDiscriminator(mfd_hops, mfd_channels).to(device).train()
        self.mel = DacMelLoss().to(device)
        self.g_params, self.opt_g, self.sched_g = optim.make(
            p for p in self.gen.parameters() if p.requires_grad)
        self.d_params, self.opt_d, self.sched_d = optim.make(self.disc.parameters())
        self.grad_clip = optim.grad_clip

    @staticmethod
    def _crop(x, x_hat):
        n = min(x.shape[-1], x_hat.shape[-1])    # §9.9
        return x[..., :n], x_hat[..., :n]

    def d_step(self, audio, x_hat_detached):
        real, fake = self._crop(audio, x_hat_detached)
        r_logits, _ = self.disc(real)
        f_logits, _ = self.disc(fake)
        loss_d = hinge_d_loss(r_logits, f_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        norm = _clip(self.d_params, self.grad_clip)
        self.opt_d.step()
        self.sched_d.step()
        return _f(loss_d), norm

    def g_step(self, audio, out):
        real, fake = self._crop(audio, out["audio"])
        l_mel = self.mel(fake, real)
        l_sem = out["vae/semantic_loss"]
        l_kl = out["vae/kl_loss"]
        self.disc.requires_grad_(False)          # D is not updated by the G loss (§9.10)
        try:
            f_logits, f_maps = self.disc(fake)
            with torch.no_grad():
                _, r_maps = self.disc(real)
            l_adv = hinge_g_loss(f_logits)
            l_fm = feature_matching_loss(r_maps, f_maps)
        finally:
            self.disc.requires_grad_(True)
        loss_g = W_MEL * l_mel + W_SEM * l_sem + W_KL * l_kl + W_FM * l_fm + W_ADV * l_adv
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        norm = _clip(self.g_params, self.grad_clip)
        self.opt_g.step()
        self.sched_g.step()
        return {"loss_g": _f(loss_g), "mel": _f(l_mel), "sem": _f(l_sem),
                "kl": _f(l_kl), "adv": _f(l_adv), "fm": _f(l_fm), "g_norm": norm}

    def step(self, audio):
        if self.d_input == "recompute":
            with torch.no_grad():
                x_hat = self.gen(audio)["audio"]
            loss_d, d_norm = self.d_step(audio, x_hat)
            out = self.gen(audio)
        else:
            out = self.gen(audio)
            loss_d, d_norm = self.d_step(audio, out["audio"].detach())
        res = self.g_step(audio, out)
        res.update(loss_d=loss_d, d_norm=d_norm)
        return res


# ---------------------------------------------------------------------------------------------
# Self-test (tiny sizes, CPU)
# ---------------------------------------------------------------------------------------------

TINY_VAE = dict(decoder_depth=2, decoder_embed_dim=64, decoder_dim=16,
                decoder_intermediate_size=128, depth=2, dtype="float32", embed_dim=64,
                hop_length=160, istft_hop=320, istft_n_fft=1280, model_type="dashengtokenizer",
                n_mels_patch=128, num_heads=4, transformers_version="5.1.0", upsample_tokens=2)
TINY_ENCODER = dict(embed_dim=64, depth=2, num_heads=4)


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module, names=None):
    now = dict(module.named_parameters())
    names = names if names is not None else list(before)
    return [n for n in names if not torch.equal(before[n], now[n].detach())]


def build_tiny(reference: str, workdir: str):
    """A tiny AudioVAE built by the reference's constructor (stand-in encoder 64 wide, 2 blocks)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import time_reference as tr
    cfg = dict(tr.STANDIN_CONFIG, **TINY_ENCODER)
    sb, losatok, _infer = tr._import_reference(reference, cfg)
    sem = sb.SemanticEncoder(high_dim=TINY_VAE["embed_dim"], low_dim=TINY_VAE["decoder_dim"],
                             hidden_dim=512)
    with torch.no_grad():
        sem.encoder.init_bn.running_mean.fill_(-40.0)
        sem.encoder.init_bn.running_var.fill_(400.0)
    path = os.path.join(workdir, "semantic_encoder_tiny.pth")
    torch.save({"state_dict": sem.state_dict()}, path)
    model = losatok.AudioVAE(dict(TINY_VAE), semantic_encoder_path=path)
    return sb, model


def _synth_batch(batch, n, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    rows = []
    for i in range(batch):
        f0 = 120.0 + 60.0 * i
        x = sum(torch.sin(2 * math.pi * f0 * k * t + k) / k for k in range(1, 12))
        x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 3.0 * t) ** 2)
        x = 0.4 * x / x.abs().max() + 0.01 * torch.randn(n, generator=g)
        rows.append(x)
    return torch.stack(rows).float()


def _check_fixtures(fixtures: str):
    """Compare the from-spec MFD / mel / hinge / FM with the spec's fixture values."""
    from safetensors.torch import load_file
    audio = load_file(os.path.join(fixtures, "inputs_audio.safetensors"))
    mel = load_file(os.path.join(fixtures, "mel_loss.safetensors"))
    loss = DacMelLoss()
    fake = audio["wave_fake"].clone().requires_grad_(True)
    per = loss.per_scale(fake, audio["wave_real"])
    total = sum(per)
    total.backward()
    rel = abs(_f(total) - float(mel["mel_loss_total"])) / float(mel["mel_loss_total"])
    assert rel < 1e-5, f"mel loss {_f(total)} vs fixture {float(mel['mel_loss_total'])}"
    for s, (a, b) in enumerate(zip(per, mel["mel_loss_per_scale"].tolist())):
        assert abs(_f(a) - b) <= 1e-5 * abs(b) + 1e-7, f"mel scale {s}: {_f(a)} vs {b}"
    g_ref = mel["mel_loss_grad_wrt_fake"]
    assert torch.isfinite(fake.grad).all(), "mel loss gradient not finite"
    mel_gerr = _f((fake.grad - g_ref).abs().max() / g_ref.abs().max())
    assert mel_gerr < 1e-4, f"mel loss gradient differs by {mel_gerr:.2e} of its absmax"

    disc = MultiFrequencyDiscriminator(MFD_HOPS, (32,) * 6)
    w = load_file(os.path.join(fixtures, "disc_mfd_weights_folded.safetensors"))
    with torch.no_grad():
        for i, br in enumerate(disc.branches):
            for j, conv in enumerate(br.convs):
                k = f"discriminators.{i}.discriminator.{j}.{1 if j == 0 else 2}"
                wt = w[k + ".weight"]
                # weight norm: g = ‖w‖ per output channel, v = w reproduces w exactly
                conv.parametrizations.weight.original0.copy_(
                    wt.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1))
                conv.parametrizations.weight.original1.copy_(wt)
                conv.bias.copy_(w[k + ".bias"])
    out = load_file(os.path.join(fixtures, "disc_mfd_outputs.safetensors"))
    real, fake = audio["wave_real_disc"], audio["wave_fake_disc"].clone().requires_grad_(True)
    inp = disc.branches[0].features(real.reshape(2, -1))
    assert torch.allclose(inp, out["mfd_input_real_0"], rtol=1e-4, atol=1e-6), "MFD input"
    assert torch.allclose(disc.branches[0].fb, out["mfd_melfb_0"], atol=1e-8), "MFD filterbank"
    rl, rf = disc(real)
    fl, ff = disc(fake)
    for i in range(6):
        for name, got in (("real", rl[i]), ("fake", fl[i])):
            ref = out[f"mfd_logits_{name}_{i}"]
            assert got.shape == ref.shape, f"MFD logits {name} {i}: {got.shape} vs {ref.shape}"
            err = _f((got - ref).abs().max() / ref.abs().max())
            assert err < 1e-3, f"MFD logits {name} {i} differ by {err:.2e} of absmax"
        for j in range(6):
            ref = out[f"mfd_fmap_real_{i}_{j}"]
            err = _f((rf[i][j] - ref).abs().max() / ref.abs().max().clamp(min=1e-12))
            assert err < 1e-3, f"MFD fmap real {i} {j} differs by {err:.2e}"
    checks = {"mfd_d_hinge_mean": hinge_d_loss(rl, fl), "mfd_g_hinge_mean": hinge_g_loss(fl),
              "mfd_fm_sum_layers_mean_discs": feature_matching_loss(rf, ff)}
    for k, v in checks.items():
        ref = float(out[k])
        assert abs(_f(v) - ref) <= 1e-4 * abs(ref), f"{k}: {_f(v)} vs {ref}"
    (checks["mfd_g_hinge_mean"] + checks["mfd_fm_sum_layers_mean_discs"]).backward()
    g_ref = out["mfd_grad_wrt_fake_of_g_hinge_mean_plus_fm_vocos"]
    gerr = _f((fake.grad - g_ref).abs().max() / g_ref.abs().max())
    assert gerr < 1e-3, f"MFD input gradient differs by {gerr:.2e} of its absmax"
    return {"mel_total_rel_err": rel, "mel_grad_err": mel_gerr, "mfd_grad_err": gerr}


def selftest(a) -> int:
    import tempfile
    import time
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()

    # full-size MFD: 5.26 M parameters (§5)
    n_full = sum(p.numel() for p in MultiFrequencyDiscriminator().parameters())
    assert abs(n_full - 5.26e6) < 0.01e6, f"full MFD has {n_full} parameters, expected 5.26 M"

    # shapes and the mel loss at zero distance
    x = _synth_batch(2, 16000, 1)
    mel = DacMelLoss()
    assert _f(mel(x, x)) == 0.0
    assert mel.mel(x, 2048).shape == (2, 320, 1 + 16000 // 512)
    tiny_d = MultiFrequencyDiscriminator(MFD_HOPS, (32,) * 6)
    logits, fmaps = tiny_d(x)
    assert len(logits) == 6 and all(len(f) == 6 for f in fmaps)
    assert logits[-1].dim() == 4 and logits[0].shape[:2] == (2, 1)

    fixture_note = "fixtures not checked (no --fixtures)"
    if a.fixtures:
        r = _check_fixtures(a.fixtures)
        fixture_note = (f"fixtures match: mel loss rel err {r['mel_total_rel_err']:.1e}, "
                        f"input-gradient errs mel {r['mel_grad_err']:.1e}, "
                        f"MFD {r['mfd_grad_err']:.1e} of absmax")

    with tempfile.TemporaryDirectory(prefix="torch-train-selftest-") as tmp:
        sb, model = build_tiny(a.reference, tmp)
        model.eval()
        sem_before = _snapshot(model.semantic_encoder)

        # stage 1: SemBo on the frozen tiny encoder
        s1 = Stage1Step(sb, model.semantic_encoder.encoder, TINY_VAE["embed_dim"],
                        TINY_VAE["decoder_dim"], 512)
        before = _snapshot(s1.sembo)
        audio = _synth_batch(2, 16000, 2)
        r1 = [s1.step(audio) for _ in range(2)]
        for r in r1:
            assert all(math.isfinite(v) for v in r.values()), f"stage 1 not finite: {r}"
        assert len(_changed(before, s1.sembo)) == len(before), "stage 1: not all SemBo params moved"
        assert not _changed(sem_before, model.semantic_encoder), "stage 1 moved the frozen encoder"

        # stage 2, both D-input modes
        r2 = {}
        for mode in ("recompute", "shared"):
            gen = make_stage2_generator(model)
            s2 = Stage2Step(gen, d_input=mode, mfd_channels=(32,) * 6)
            trainable = [n for n, p in gen.named_parameters() if p.requires_grad]
            assert trainable and not any(n.startswith("semantic_encoder.") for n in trainable)
            g_before, d_before = _snapshot(gen), _snapshot(s2.disc)
            r2[mode] = [s2.step(audio) for _ in range(2)]
            for r in r2[mode]:
                assert all(math.isfinite(v) for v in r.values()), f"stage 2 not finite: {r}"
            moved = _changed(g_before, gen, trainable)
            assert len(moved) == len(trainable), \
                f"stage 2 ({mode}): unmoved {sorted(set(trainable) - set(moved))[:5]}"
            # every conv weight (g and v) moves; a bias may not: when all logits lie inside the
            # hinge margins, the hinge gradient of the last bias is exactly 0 (−1 + 1)
            d_moved = set(_changed(d_before, s2.disc))
            unmoved = [n for n in d_before if n not in d_moved and not n.endswith(".bias")]
            assert not unmoved, f"stage 2 ({mode}): D weights unmoved {unmoved[:8]}"
            assert not _changed(sem_before, model.semantic_encoder), "stage 2 moved the frozen encoder"
            # D isolation: a G update alone leaves D untouched
            d_mid = _snapshot(s2.disc)
            s2.g_step(audio, gen(audio))
            assert not _changed(d_mid, s2.disc), "the G update changed D"
        del model

    print(f"selftest OK in {time.perf_counter() - t0:.1f} s ({fixture_note})")
    for i, r in enumerate(r1):
        print(f"  stage 1 step {i}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()))
    for mode, rs in r2.items():
        for i, r in enumerate(rs):
            print(f"  stage 2 ({mode}) step {i}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()))
    return 0


def main(argv) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--selftest", action="store_true", help="tiny-size self-test on the CPU")
    p.add_argument("--reference", help="local checkout of wxzyd123/LoSATok")
    p.add_argument("--fixtures", help="also compare with the spec's fixtures/losses folder")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if not a.selftest:
        p.error("nothing to do: this module is imported by time_reference.py; use --selftest")
    if not a.reference or not os.path.isfile(os.path.join(a.reference, "semantic_bottleneck.py")):
        p.error("--reference must name a LoSATok checkout (with semantic_bottleneck.py)")
    if a.fixtures and not os.path.isfile(os.path.join(a.fixtures, "mel_loss.safetensors")):
        p.error(f"--fixtures {a.fixtures} has no mel_loss.safetensors")
    a.reference = os.path.abspath(a.reference)
    return selftest(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
