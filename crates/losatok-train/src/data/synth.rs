//! A small synthetic multi-domain data set for the CPU demo.
//!
//! Three domains of 16 kHz mono audio, deterministic given a seed:
//!
//! * `speech`: a source-filter formant synthesiser. A Rosenberg glottal pulse train (with
//!   jitter, phrase declination and pitch accents) drives a cascade of four time-varying
//!   formant resonators that glide between vowel targets; fricatives (band-pass noise),
//!   plosive bursts, aspiration and pauses between words make it speech-like.
//! * `music`: additive harmonic notes on a musical scale with ADSR envelopes, vibrato,
//!   partials whose brightness decays over the note, a melody over sustained chords and a
//!   bass line.
//! * `general`: acoustic events over a low background noise: decaying noise bursts, clicks
//!   and knocks (damped resonances), band-pass noise with slow modulation (wind, engines),
//!   chirps and mains hum.
//!
//! Every clip is normalised to a peak between 0.3 and 0.85. [`synthesize_dataset`] writes a
//! few seconds per file as 32-bit float WAV plus a JSONL manifest; [`eval_clip`] gives a
//! held-back clip (all three domains, drawn from a seed stream that the training files never
//! use) for evaluating the demo.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use losatok_audio::{write_wav, WavFormat};

use super::manifest::{write_manifest, ManifestEntry};
use super::DataError;

/// Sample rate of the synthetic audio.
const SR: f64 = 16_000.0;

/// Salt of the seed stream used by [`eval_clip`] (never used for training files).
const EVAL_SALT: u64 = 0x5eed_e7a1_c11b_0000;

/// The kinds of synthetic audio, one per domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SynthKind {
    /// Speech-like formant synthesis.
    Speech,
    /// Harmonic notes and chords.
    Music,
    /// Noise events, clicks and chirps.
    General,
}

impl SynthKind {
    /// All kinds, in domain-name order of the manifest.
    pub const ALL: [SynthKind; 3] = [SynthKind::Speech, SynthKind::Music, SynthKind::General];

    /// The domain name (`"speech"`, `"music"`, `"general"`).
    pub fn name(self) -> &'static str {
        match self {
            SynthKind::Speech => "speech",
            SynthKind::Music => "music",
            SynthKind::General => "general",
        }
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }

    /// Uniform integer in `lo..=hi`.
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + ((u128::from(self.next_u64()) * (hi - lo + 1) as u128) >> 64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-300);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

/// Seed of file `file` of domain `kind`.
fn file_seed(seed: u64, kind: SynthKind, file: u64) -> u64 {
    let mut r = Rng::new(seed ^ (kind as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
    let base = r.next_u64();
    Rng::new(base ^ file.wrapping_mul(0xe703_7ed1_a0b4_28db)).next_u64()
}

/// Klatt-style two-pole resonator with unity gain at 0 Hz.
#[derive(Clone, Copy, Default)]
struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn step(&mut self, x: f64, freq: f64, bw: f64) -> f64 {
        let r = (-PI * bw / SR).exp();
        let b = 2.0 * r * (2.0 * PI * freq / SR).cos();
        let c = -r * r;
        let a = 1.0 - b - c;
        let y = a * x + b * self.y1 + c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Band-pass resonator normalised to unit peak gain at its centre.
#[derive(Clone, Copy, Default)]
struct BandPass {
    y1: f64,
    y2: f64,
}

impl BandPass {
    fn step(&mut self, x: f64, freq: f64, bw: f64) -> f64 {
        let r = (-PI * bw / SR).exp();
        let b = 2.0 * r * (2.0 * PI * freq / SR).cos();
        let c = -r * r;
        let y = (1.0 - r) * x + b * self.y1 + c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Scales `x` to a peak of `peak` (silent input stays silent).
fn normalize(x: &mut [f64], peak: f64) {
    let m = x.iter().fold(0f64, |m, v| m.max(v.abs()));
    if m > 1e-12 {
        let g = peak / m;
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// Raised-cosine fade of `n` samples at both ends.
fn fade_edges(x: &mut [f64], n: usize) {
    let n = n.min(x.len() / 2);
    let len = x.len();
    for i in 0..n {
        let g = 0.5 - 0.5 * (PI * i as f64 / n as f64).cos();
        x[i] *= g;
        x[len - 1 - i] *= g;
    }
}

/// Vowel formant targets (F1, F2, F3) in Hz, adult male.
const VOWELS: [[f64; 3]; 8] = [
    [730.0, 1090.0, 2440.0], // a
    [270.0, 2290.0, 3010.0], // i
    [300.0, 870.0, 2240.0],  // u
    [530.0, 1840.0, 2480.0], // e
    [570.0, 840.0, 2410.0],  // o
    [660.0, 1720.0, 2410.0], // ae
    [490.0, 1350.0, 1690.0], // er
    [520.0, 1190.0, 2390.0], // schwa
];

/// Per-sample controls of the speech synthesiser.
struct SpeechTrack {
    voice: Vec<f64>,
    f0: Vec<f64>,
    formants: Vec<[f64; 3]>,
    noise: Vec<f64>,
    noise_freq: Vec<f64>,
    noise_bw: Vec<f64>,
}

fn speech(n: usize, rng: &mut Rng) -> Vec<f64> {
    let base_f0 = rng.range(85.0, 240.0);
    let tract = rng.range(0.9, 1.2) * (base_f0 / 120.0).powf(0.12);
    let breath = rng.range(0.02, 0.12);
    let mut tr = SpeechTrack {
        voice: vec![0.0; n],
        f0: vec![base_f0; n],
        formants: vec![VOWELS[7]; n],
        noise: vec![0.0; n],
        noise_freq: vec![4000.0; n],
        noise_bw: vec![2000.0; n],
    };
    let mut t = (rng.range(0.05, 0.3) * SR) as usize;
    let mut phrase_start = t;
    let mut vowel = VOWELS[rng.int(0, VOWELS.len() - 1)];
    while t < n {
        let syllables = rng.int(1, 4);
        for s in 0..syllables {
            // Onset consonant.
            if rng.chance(0.65) && t < n {
                if rng.chance(0.5) {
                    // Fricative: band-pass noise.
                    let len = (rng.range(0.04, 0.12) * SR) as usize;
                    let freq = rng.range(2500.0, 6500.0);
                    let bw = rng.range(800.0, 3000.0);
                    let amp = rng.range(0.05, 0.2);
                    for i in 0..len.min(n - t) {
                        let env = (PI * i as f64 / len as f64).sin();
                        tr.noise[t + i] = amp * env;
                        tr.noise_freq[t + i] = freq;
                        tr.noise_bw[t + i] = bw;
                    }
                    t += len;
                } else {
                    // Plosive: closure, then a short broadband burst.
                    t += (rng.range(0.02, 0.06) * SR) as usize;
                    let len = (rng.range(0.005, 0.02) * SR) as usize;
                    let freq = rng.range(1000.0, 4500.0);
                    for i in 0..len.min(n.saturating_sub(t)) {
                        tr.noise[t + i] = 0.5 * (-(i as f64) / (0.3 * len as f64)).exp();
                        tr.noise_freq[t + i] = freq;
                        tr.noise_bw[t + i] = 4000.0;
                    }
                    t += len;
                }
            }
            if t >= n {
                break;
            }
            // Voiced nucleus gliding from the previous vowel to a new one.
            let len = (rng.range(0.09, 0.26) * SR) as usize;
            let next = VOWELS[rng.int(0, VOWELS.len() - 1)];
            let accent = if s == 0 || rng.chance(0.3) {
                rng.range(0.05, 0.35)
            } else {
                rng.range(-0.1, 0.1)
            };
            let amp = rng.range(0.6, 1.0);
            for i in 0..len.min(n - t) {
                let p = i as f64 / len as f64;
                let glide = 0.5 - 0.5 * (PI * p.min(0.6) / 0.6).cos();
                let mut f = [0.0; 3];
                for k in 0..3 {
                    f[k] = (vowel[k] + (next[k] - vowel[k]) * glide) * tract;
                }
                let since = (t + i - phrase_start) as f64 / SR;
                let declination = (1.0 - 0.08 * since).max(0.75);
                tr.f0[t + i] = base_f0 * declination * (1.0 + accent * (PI * p).sin());
                tr.formants[t + i] = f;
                let env = (p / 0.15).min(1.0) * ((1.0 - p) / 0.2).min(1.0);
                tr.voice[t + i] = amp * env;
            }
            vowel = next;
            t += len;
        }
        // Pause between words, sometimes a breath between phrases.
        let pause = if rng.chance(0.2) {
            phrase_start = t;
            rng.range(0.3, 0.7)
        } else {
            rng.range(0.05, 0.25)
        };
        t += (pause * SR) as usize;
    }

    // Synthesis.
    let mut out = vec![0.0; n];
    let mut phase = 0.0f64;
    let mut prev_g = 0.0;
    let mut jitter = 0.0;
    let mut tract_res = [Resonator::default(); 4];
    let mut fric = BandPass::default();
    let mut hp = 0.0;
    // Recording noise floor, about 50 dB below the voice.
    let floor = rng.range(2e-4, 1e-3);
    for (i, sample) in out.iter_mut().enumerate() {
        if i % 64 == 0 {
            jitter = 0.9 * jitter + 0.1 * rng.normal() * 0.02;
        }
        let f0 = tr.f0[i] * (1.0 + jitter);
        phase += f0 / SR;
        if phase >= 1.0 {
            phase -= 1.0;
        }
        // Rosenberg pulse and its derivative (lip radiation).
        let g = if phase < 0.4 {
            0.5 - 0.5 * (PI * phase / 0.4).cos()
        } else if phase < 0.56 {
            (0.5 * PI * (phase - 0.4) / 0.16).cos()
        } else {
            0.0
        };
        let dg = g - prev_g;
        prev_g = g;
        let white = rng.normal();
        let v = tr.voice[i];
        let mut x = v * (dg * 8.0 + breath * white * g);
        let fs = tr.formants[i];
        let freqs = [fs[0], fs[1], fs[2], 3500.0 * tract];
        let bws = [
            60.0 + 0.05 * fs[0],
            90.0 + 0.04 * fs[1],
            120.0 + 0.03 * fs[2],
            250.0,
        ];
        for (r, (&f, &b)) in tract_res.iter_mut().zip(freqs.iter().zip(&bws)) {
            x = r.step(x, f.min(7500.0), b);
        }
        // Radiation-like first difference to tilt the spectrum up a little.
        let y = x - 0.7 * hp;
        hp = x;
        let nz = fric.step(white, tr.noise_freq[i], tr.noise_bw[i]) * tr.noise[i];
        *sample = y + nz + floor * rng.normal();
    }
    out
}

/// Frequency of MIDI note `m`.
fn midi_hz(m: f64) -> f64 {
    440.0 * 2f64.powf((m - 69.0) / 12.0)
}

/// Adds one harmonic note to `out`.
#[allow(clippy::too_many_arguments)]
fn add_note(
    out: &mut [f64],
    start: usize,
    len: usize,
    freq: f64,
    amp: f64,
    timbre: &Timbre,
    rng: &mut Rng,
) {
    let n = out.len();
    let release = (timbre.release * SR) as usize;
    let total = (len + release).min(n.saturating_sub(start));
    let vib_rate = rng.range(4.5, 6.5);
    let vib_depth = timbre.vibrato * rng.range(0.5, 1.0);
    let vib_phase = rng.range(0.0, 2.0 * PI);
    let partials = ((7000.0 / freq) as usize).clamp(1, 40);
    let amps: Vec<f64> = (1..=partials)
        .map(|k| {
            let k = k as f64;
            let odd = if k as usize % 2 == 1 {
                1.0
            } else {
                timbre.even
            };
            odd * k.powf(-timbre.slope)
        })
        .collect();
    let mut phase = rng.range(0.0, 1.0);
    let attack = timbre.attack * SR;
    let decay = timbre.decay * SR;
    for i in 0..total {
        let t = i as f64 / SR;
        let fi = i as f64;
        let env = if fi < attack {
            fi / attack
        } else if fi < attack + decay {
            1.0 - (1.0 - timbre.sustain) * (fi - attack) / decay
        } else {
            timbre.sustain
        };
        let env = if i >= len {
            env * (1.0 - (i - len) as f64 / release.max(1) as f64)
        } else {
            env
        };
        let vib =
            1.0 + vib_depth * (t / 0.15).min(1.0) * (2.0 * PI * vib_rate * t + vib_phase).sin();
        phase += freq * vib / SR;
        phase -= phase.floor();
        let mut s = 0.0;
        for (k, &a) in amps.iter().enumerate() {
            let k = (k + 1) as f64;
            let stretch = (1.0 + timbre.inharm * k * k).sqrt();
            let bright = (-t * timbre.damping * (k - 1.0)).exp();
            s += a * bright * (2.0 * PI * (phase * k * stretch).fract()).sin();
        }
        out[start + i] += amp * env * s;
    }
}

/// The sound of one synthetic instrument.
struct Timbre {
    slope: f64,
    even: f64,
    inharm: f64,
    damping: f64,
    attack: f64,
    decay: f64,
    sustain: f64,
    release: f64,
    vibrato: f64,
}

impl Timbre {
    fn random(rng: &mut Rng, plucked: bool) -> Self {
        Timbre {
            slope: rng.range(0.8, 2.0),
            even: rng.range(0.2, 1.0),
            inharm: if plucked { rng.range(0.0, 2e-4) } else { 0.0 },
            damping: if plucked {
                rng.range(1.0, 4.0)
            } else {
                rng.range(0.0, 0.5)
            },
            attack: if plucked {
                rng.range(0.002, 0.01)
            } else {
                rng.range(0.02, 0.12)
            },
            decay: rng.range(0.08, 0.4),
            sustain: if plucked {
                rng.range(0.1, 0.4)
            } else {
                rng.range(0.5, 0.9)
            },
            release: rng.range(0.05, 0.3),
            vibrato: if plucked { 0.0 } else { rng.range(0.0, 0.008) },
        }
    }
}

fn music(n: usize, rng: &mut Rng) -> Vec<f64> {
    const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
    const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];
    let scale = if rng.chance(0.5) { MAJOR } else { MINOR };
    let root = rng.int(48, 60) as i32;
    let beat = 60.0 / rng.range(70.0, 140.0) * SR;
    let plucked = rng.chance(0.4);
    let lead = Timbre::random(rng, plucked);
    let pad = Timbre::random(rng, false);
    let bass = Timbre::random(rng, true);
    let note = |degree: i32, octave: i32| -> f64 {
        let d = degree.rem_euclid(7);
        let o = degree.div_euclid(7) + octave;
        f64::from(root + scale[d as usize] + 12 * o)
    };
    let mut out = vec![0.0; n];
    // Chords and bass, one per bar of four beats.
    let bar = (4.0 * beat) as usize;
    let mut t = 0usize;
    while t < n {
        let degree = [0, 3, 4, 5, 1][rng.int(0, 4)];
        let size = rng.int(2, 4);
        for j in 0..size {
            let f = midi_hz(note(degree + 2 * j as i32, 0));
            add_note(&mut out, t, bar, f, 0.12, &pad, rng);
        }
        add_note(
            &mut out,
            t,
            bar / 2,
            midi_hz(note(degree, -1)),
            0.25,
            &bass,
            rng,
        );
        add_note(
            &mut out,
            t + bar / 2,
            bar / 2,
            midi_hz(note(degree, -1)),
            0.2,
            &bass,
            rng,
        );
        t += bar;
    }
    // Melody: a random walk on the scale.
    let mut t = 0usize;
    let mut degree = rng.int(0, 6) as i32;
    while t < n {
        let beats = [0.5, 0.5, 1.0, 1.0, 1.5, 2.0][rng.int(0, 5)];
        let len = (beats * beat) as usize;
        if rng.chance(0.85) {
            let f = midi_hz(note(degree, 1));
            add_note(&mut out, t, len, f, rng.range(0.25, 0.4), &lead, rng);
        }
        degree = (degree + [-2, -1, -1, 0, 1, 1, 2, 3][rng.int(0, 7)]).clamp(-3, 10);
        t += len;
    }
    out
}

fn general(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = vec![0.0; n];
    // Background: low-passed noise.
    let bg = rng.range(0.003, 0.02);
    let pole = rng.range(0.7, 0.98);
    let mut lp = 0.0;
    for v in out.iter_mut() {
        lp = pole * lp + (1.0 - pole) * rng.normal();
        *v = bg * lp * 4.0;
    }
    let mut t = (rng.range(0.0, 0.3) * SR) as usize;
    while t < n {
        match rng.int(0, 5) {
            0 => {
                // Decaying noise burst, optionally coloured.
                let tau = rng.range(0.02, 0.25) * SR;
                let len = ((tau * 5.0) as usize).min(n - t);
                let amp = rng.range(0.2, 1.0);
                let pole = rng.range(0.0, 0.9);
                let mut y = 0.0;
                for i in 0..len {
                    y = pole * y + (1.0 - pole) * rng.normal();
                    out[t + i] += amp * y * (-(i as f64) / tau).exp();
                }
            }
            1 => {
                // Clicks and knocks: damped resonances, sometimes repeated.
                let repeats = rng.int(1, 4);
                let gap = (rng.range(0.05, 0.25) * SR) as usize;
                let modes: Vec<(f64, f64, f64)> = (0..rng.int(1, 3))
                    .map(|_| {
                        (
                            rng.range(300.0, 6000.0),
                            rng.range(0.003, 0.06),
                            rng.range(0.3, 1.0),
                        )
                    })
                    .collect();
                for r in 0..repeats {
                    let s = t + r * gap;
                    let amp = rng.range(0.4, 1.0);
                    for &(f, tau, a) in &modes {
                        let len = ((tau * 6.0 * SR) as usize).min(n.saturating_sub(s));
                        for i in 0..len {
                            let tt = i as f64 / SR;
                            out[s + i] += amp * a * (-tt / tau).exp() * (2.0 * PI * f * tt).sin();
                        }
                    }
                }
            }
            2 => {
                // Band-pass noise with a slow amplitude modulation (wind, engine, water).
                let len = ((rng.range(0.3, 1.5) * SR) as usize).min(n - t);
                let f0 = rng.range(150.0, 5000.0);
                let f1 = f0 * rng.range(0.6, 1.6);
                let bw = rng.range(50.0, 1500.0);
                let rate = rng.range(0.5, 8.0);
                let amp = rng.range(0.2, 0.8);
                let mut bp = BandPass::default();
                for i in 0..len {
                    let p = i as f64 / len as f64;
                    let f = (f0 + (f1 - f0) * p).min(7500.0);
                    let m = 0.6 + 0.4 * (2.0 * PI * rate * i as f64 / SR).sin();
                    let env = (PI * p).sin();
                    out[t + i] += amp * m * env * bp.step(rng.normal(), f, bw) * 3.0;
                }
            }
            3 => {
                // Exponential chirp with a few harmonics.
                let len = ((rng.range(0.08, 1.0) * SR) as usize).min(n - t);
                let f0 = rng.range(200.0, 3000.0);
                let f1 = rng.range(200.0, 6000.0);
                let amp = rng.range(0.2, 0.6);
                let harmonics = rng.int(1, 3);
                let mut phase = 0.0;
                for i in 0..len {
                    let p = i as f64 / len as f64;
                    let f = f0 * (f1 / f0).powf(p);
                    phase += f / SR;
                    let env = (PI * p).sin().powf(0.5);
                    let mut s = 0.0;
                    for h in 1..=harmonics {
                        if f * h as f64 <= 7500.0 {
                            s += (2.0 * PI * phase * h as f64).sin() / h as f64;
                        }
                    }
                    out[t + i] += amp * env * s;
                }
            }
            4 => {
                // Mains hum or engine drone: harmonics of a low fundamental.
                let len = ((rng.range(0.5, 2.0) * SR) as usize).min(n - t);
                let f = if rng.chance(0.5) {
                    [50.0, 60.0][rng.int(0, 1)]
                } else {
                    rng.range(30.0, 120.0)
                };
                let amp = rng.range(0.05, 0.3);
                for i in 0..len {
                    let tt = i as f64 / SR;
                    let p = i as f64 / len as f64;
                    let env = (p / 0.1).min(1.0) * ((1.0 - p) / 0.1).min(1.0);
                    let s: f64 = (1..=8)
                        .map(|h| (2.0 * PI * f * h as f64 * tt).sin() / h as f64)
                        .sum();
                    out[t + i] += amp * env * s;
                }
            }
            _ => {
                // Short silence-like gap.
            }
        }
        t += (rng.range(0.1, 0.7) * SR) as usize;
    }
    out
}

/// `samples` samples of 16 kHz mono synthetic audio of `kind`, deterministic given `seed`,
/// with a peak between 0.3 and 0.85 and short fades at both ends.
pub fn synth_clip(kind: SynthKind, samples: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let peak = rng.range(0.3, 0.85);
    let mut x = match kind {
        SynthKind::Speech => speech(samples, &mut rng),
        SynthKind::Music => music(samples, &mut rng),
        SynthKind::General => general(samples, &mut rng),
    };
    fade_edges(&mut x, 160);
    normalize(&mut x, peak);
    x.into_iter().map(|v| v as f32).collect()
}

/// The held-back evaluation clip of the demo: `seconds` of audio made of a speech, a music
/// and a general part (in that order, a third each, with 20 ms fades), from a seed stream
/// that [`synthesize_dataset`] never uses.
pub fn eval_clip(seconds: f64, seed: u64) -> Vec<f32> {
    let total = (seconds.max(0.0) * SR).round() as usize;
    let mut out = Vec::with_capacity(total);
    for (i, kind) in SynthKind::ALL.into_iter().enumerate() {
        let end = total * (i + 1) / 3;
        let len = end - out.len();
        let mut part: Vec<f64> = synth_clip(kind, len, file_seed(seed ^ EVAL_SALT, kind, 0))
            .into_iter()
            .map(f64::from)
            .collect();
        fade_edges(&mut part, 320);
        out.extend(part.into_iter().map(|v| v as f32));
    }
    out
}

/// Writes a synthetic data set to `dir`: for each domain (`speech`, `music`, `general`),
/// about `seconds_per_domain` seconds in files of 2 to 5 seconds
/// (`dir/<domain>/<domain>_NNN.wav`, 16 kHz 32-bit float), plus the JSONL manifest
/// `dir/manifest.jsonl` (relative paths, durations, domains), whose path is returned.
/// Deterministic given `seed`; existing files are replaced.
pub fn synthesize_dataset(
    dir: &Path,
    seconds_per_domain: f64,
    seed: u64,
) -> Result<PathBuf, DataError> {
    if !seconds_per_domain.is_finite() || seconds_per_domain < 1.0 {
        return Err(DataError::InvalidConfig(format!(
            "seconds_per_domain must be at least 1 (got {seconds_per_domain})"
        )));
    }
    let mut entries = Vec::new();
    for kind in SynthKind::ALL {
        let sub = dir.join(kind.name());
        std::fs::create_dir_all(&sub).map_err(|source| DataError::Write {
            path: sub.clone(),
            source,
        })?;
        let mut lengths_rng = Rng::new(file_seed(seed, kind, u64::MAX));
        let total = (seconds_per_domain * SR).round() as usize;
        let mut done = 0usize;
        let mut i = 0u64;
        while done < total {
            let mut len = (lengths_rng.range(2.0, 5.0) * SR) as usize;
            let rest = total - done;
            if rest < len + SR as usize {
                len = rest;
            }
            let audio = synth_clip(kind, len, file_seed(seed, kind, i));
            let path = sub.join(format!("{}_{i:03}.wav", kind.name()));
            write_wav(&path, &audio, SR as u32, WavFormat::Float32)?;
            entries.push(ManifestEntry::new(path, Some(len as f64 / SR), kind.name()));
            done += len;
            i += 1;
        }
    }
    let manifest = dir.join("manifest.jsonl");
    write_manifest(&entries, &manifest)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Fraction of energy above 4 kHz (via a first difference as a crude high-pass proxy).
    fn brightness(x: &[f32]) -> f64 {
        let d: f64 = x.windows(2).map(|w| f64::from(w[1] - w[0]).powi(2)).sum();
        let e: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
        d / e.max(1e-12)
    }

    #[test]
    fn clips_are_deterministic_and_sane() {
        for kind in SynthKind::ALL {
            let a = synth_clip(kind, 48_000, 7);
            let b = synth_clip(kind, 48_000, 7);
            let c = synth_clip(kind, 48_000, 8);
            assert_eq!(a, b);
            assert_ne!(a, c);
            assert_eq!(a.len(), 48_000);
            let peak = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((0.29..=0.9).contains(&peak), "{kind:?} peak {peak}");
            assert!(a.iter().all(|v| v.is_finite()));
            let r = rms(&a);
            assert!(r > 0.01, "{kind:?} rms {r}");
            let br = brightness(&a);
            assert!(br > 1e-3 && br < 3.0, "{kind:?} brightness {br}");
        }
    }

    #[test]
    fn speech_has_pauses() {
        let x = synth_clip(SynthKind::Speech, 80_000, 3);
        // 20 ms frames: some are much quieter than the loud ones.
        let frames: Vec<f64> = x.chunks(320).map(rms).collect();
        let loud = frames.iter().cloned().fold(0.0, f64::max);
        let quiet = frames.iter().filter(|&&r| r < 0.05 * loud).count();
        assert!(quiet >= 5, "{quiet} quiet frames");
    }

    #[test]
    fn eval_clip_is_held_back() {
        let e = eval_clip(3.0, 1);
        assert_eq!(e.len(), 48_000);
        assert_eq!(e, eval_clip(3.0, 1));
        let train = synth_clip(
            SynthKind::Speech,
            16_000,
            file_seed(1, SynthKind::Speech, 0),
        );
        assert_ne!(&e[..16_000], &train[..]);
        let peak = e.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak <= 0.9);
    }
}
