//! Resampling with libsoxr, reproducing `librosa.resample(..., res_type="soxr_hq")`.
//!
//! librosa 0.11 resamples a mono float32 signal with python-soxr's `soxr.resample(y,
//! orig_sr, target_sr, quality="soxr_hq")` and then fixes the length with
//! `librosa.util.fix_length(y_hat, size=ceil(N * target_sr / orig_sr))`. python-soxr (1.x)
//! runs, for a one-dimensional contiguous input:
//!
//! * `soxr_create(in, out, 1, ..., io_spec(FLOAT32_S, FLOAT32_S), quality_spec(HQ, 0), NULL)`;
//! * `olen = (size_t)(N * out / in + 1)`, `div_len = (size_t)max(1000, 48000 * in / out)`;
//! * `soxr_process` on consecutive `div_len`-sample pieces, each with the remaining output
//!   room `olen - out_pos`, then one flush call `soxr_process(NULL, 0, ...)`.
//!
//! [`resample`] repeats those calls exactly. libsoxr consumes all input it is given and keeps
//! what does not fit in the output, and its filters run on fixed internal blocks, so its
//! output does not depend on how the input is split: [`StreamingResampler`] feeds arbitrary
//! blocks, flushes at the end and applies the same final length rule; the tests check that
//! both give bit-identical results.
//!
//! # Engine and bit-exactness
//!
//! libsoxr comes from `losatok-soxr-sys`, which compiles the libsoxr sources python-soxr
//! 1.1 bundles (0.1.3-14-ga66f3ee) with the configuration of python-soxr's CMake build:
//! SIMD engines included. libsoxr picks its engine at run time in `soxr_create`; for
//! `soxr_hq` on f32 that is `cr32s` (SSE + PFFFT on x86-64, NEON on aarch64) unless the
//! environment variable `SOXR_USE_SIMD` (or `SOXR_USE_SIMD32`) is set to `0` (or anything
//! `atoi` reads as 0), in which case it is the scalar `cr32`. python-soxr reads the same
//! variables, so in the same environment both run the same engine. On x86-64 the output
//! is bit-identical to python-soxr / librosa (checked on the fixtures and on random and
//! near-silent signals at 8 to 96 kHz, with and without `SOXR_USE_SIMD=0`); the two engines
//! differ from each other by up to about 1e-6, so do not set `SOXR_USE_SIMD` when parity
//! with a default librosa install matters. libsoxr also honours `SOXR_MIN_DFT_SIZE`,
//! `SOXR_LARGE_DFT_SIZE`, `SOXR_COEFS_SIZE`, `SOXR_COEF_INTERP` and friends (see
//! `losatok_soxr_sys`); they change the rounding too. Other architectures are not verified
//! bit for bit (aarch64 compilers may fuse multiply-adds).

use std::ffi::CStr;
use std::os::raw::{c_uint, c_void};
use std::ptr;

use losatok_soxr_sys::{
    soxr_create, soxr_delete, soxr_error_t, soxr_io_spec, soxr_process, soxr_quality_spec, soxr_t,
    SOXR_FLOAT32_S, SOXR_HQ,
};

use crate::error::AudioError;

/// The sample rate the LoSATok model works at.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Output length of `librosa.resample(y, orig_sr=in_rate, target_sr=out_rate)` for an input
/// of `n_in` samples: `int(np.ceil(n_in * (out_rate / in_rate)))`, with the ratio rounded to
/// f64 first exactly as librosa does. Equal rates return `n_in` (librosa does not resample).
pub fn resampled_len(n_in: u64, in_rate: u32, out_rate: u32) -> u64 {
    if in_rate == out_rate {
        return n_in;
    }
    let ratio = f64::from(out_rate) / f64::from(in_rate);
    (n_in as f64 * ratio).ceil() as u64
}

/// Owned libsoxr instance for one channel of f32 in split-channel layout.
struct Soxr(soxr_t);

// SAFETY: a soxr instance has no thread affinity; it is only used through `&mut self`.
unsafe impl Send for Soxr {}

impl Soxr {
    fn new(in_rate: f64, out_rate: f64) -> Result<Self, AudioError> {
        let mut err: soxr_error_t = ptr::null();
        // SAFETY: plain constructors of value structs, then soxr_create with valid pointers
        // to them; the runtime spec may be NULL (defaults), as python-soxr passes.
        let handle = unsafe {
            let io = soxr_io_spec(SOXR_FLOAT32_S, SOXR_FLOAT32_S);
            let quality = soxr_quality_spec(SOXR_HQ, 0);
            soxr_create(
                in_rate,
                out_rate,
                1 as c_uint,
                &mut err,
                &io,
                &quality,
                ptr::null(),
            )
        };
        if !err.is_null() || handle.is_null() {
            if !handle.is_null() {
                // SAFETY: handle came from soxr_create and is not used afterwards.
                unsafe { soxr_delete(handle) };
            }
            return Err(AudioError::Resampler(error_text(err, "soxr_create failed")));
        }
        Ok(Soxr(handle))
    }

    /// One `soxr_process` call. `input: None` is the flush call. All input is consumed
    /// (no `idone` pointer, like python-soxr); returns the number of samples written to `out`.
    fn process(&mut self, input: Option<&[f32]>, out: &mut [f32]) -> Result<usize, AudioError> {
        let in_planes: [*const c_void; 1] =
            [input.map_or(ptr::null(), |x| x.as_ptr().cast::<c_void>())];
        let out_planes: [*mut c_void; 1] = [out.as_mut_ptr().cast::<c_void>()];
        let (in_arg, ilen) = match input {
            Some(x) => (in_planes.as_ptr().cast::<c_void>(), x.len()),
            None => (ptr::null(), 0),
        };
        let mut odone = 0usize;
        // SAFETY: split-channel I/O with one channel: `in_arg` points to one valid pointer to
        // `ilen` readable f32 (or is NULL to flush) and `out_planes` to one pointer to
        // `out.len()` writable f32. libsoxr does not keep these pointers after returning.
        let err = unsafe {
            soxr_process(
                self.0,
                in_arg,
                ilen,
                ptr::null_mut(),
                out_planes.as_ptr().cast::<c_void>() as *mut c_void,
                out.len(),
                &mut odone,
            )
        };
        if !err.is_null() {
            return Err(AudioError::Resampler(error_text(
                err,
                "soxr_process failed",
            )));
        }
        Ok(odone.min(out.len()))
    }
}

impl Drop for Soxr {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and owned.
        unsafe { soxr_delete(self.0) }
    }
}

fn error_text(err: soxr_error_t, fallback: &str) -> String {
    if err.is_null() {
        fallback.to_string()
    } else {
        // SAFETY: libsoxr error strings are static NUL-terminated C strings.
        unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned()
    }
}

fn check_rates(in_rate: u32, out_rate: u32) -> Result<(), AudioError> {
    if in_rate == 0 || out_rate == 0 {
        return Err(AudioError::InvalidInput(format!(
            "sample rates must be positive (got {in_rate} Hz -> {out_rate} Hz)"
        )));
    }
    Ok(())
}

fn check_finite(x: &[f32], offset: u64) -> Result<(), AudioError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(AudioError::InvalidInput(format!(
            "sample {} is not finite (NaN or infinity)",
            offset + i as u64
        ))),
        None => Ok(()),
    }
}

/// Resamples a mono signal from `in_rate` to `out_rate` exactly like
/// `librosa.resample(y, orig_sr=in_rate, target_sr=out_rate, res_type="soxr_hq")`
/// (which includes the final `fix_length`). Equal rates return a copy of the input.
///
/// Errors on a zero rate or a non-finite sample (librosa raises on both).
pub fn resample(x: &[f32], in_rate: u32, out_rate: u32) -> Result<Vec<f32>, AudioError> {
    check_rates(in_rate, out_rate)?;
    check_finite(x, 0)?;
    if in_rate == out_rate {
        return Ok(x.to_vec());
    }
    let (ir, or) = (f64::from(in_rate), f64::from(out_rate));
    let mut soxr = Soxr::new(ir, or)?;
    let ilen = x.len();
    // C++: `const size_t olen = ilen * out_rate / in_rate + 1;` (double arithmetic).
    let olen = (ilen as f64 * or / ir + 1.0) as usize;
    let div_len = (48_000.0 * ir / or).max(1000.0) as usize;
    let mut y = vec![0f32; olen];
    let mut out_pos = 0usize;
    let mut idx = 0usize;
    while idx < ilen {
        let end = ilen.min(idx + div_len);
        out_pos += soxr.process(Some(&x[idx..end]), &mut y[out_pos..])?;
        idx += div_len;
    }
    out_pos += soxr.process(None, &mut y[out_pos..])?;
    y.truncate(out_pos);
    y.resize(resampled_len(ilen as u64, in_rate, out_rate) as usize, 0.0);
    Ok(y)
}

/// [`resample`] to [`TARGET_SAMPLE_RATE`] (16 kHz): `librosa.load(..., sr=16000)`'s
/// resampling step for an in-memory mono signal at `sample_rate`.
pub fn resample_to_16k(x: &[f32], sample_rate: u32) -> Result<Vec<f32>, AudioError> {
    resample(x, sample_rate, TARGET_SAMPLE_RATE)
}

/// Incremental version of [`resample`] with bit-identical output, for signals that do not
/// fit in memory.
///
/// Feed blocks of any size with [`process`](Self::process); call [`finish`](Self::finish)
/// once at the end. The final length rule of librosa (`ceil(N * out / in)`, zero padding or
/// truncation at the tail) needs the total input length `N`, so the last few output samples
/// are held back until `finish`.
pub struct StreamingResampler {
    soxr: Option<Soxr>,
    in_rate: u32,
    out_rate: u32,
    frames_in: u64,
    /// Samples already handed to the caller.
    emitted: u64,
    /// Resampled samples not yet handed out (may exceed the final length).
    pending: Vec<f32>,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for StreamingResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("frames_in", &self.frames_in)
            .field("emitted", &self.emitted)
            .finish_non_exhaustive()
    }
}

impl StreamingResampler {
    /// A resampler from `in_rate` to `out_rate` Hz. Equal rates pass samples through.
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, AudioError> {
        check_rates(in_rate, out_rate)?;
        let soxr = if in_rate == out_rate {
            None
        } else {
            Some(Soxr::new(f64::from(in_rate), f64::from(out_rate))?)
        };
        Ok(StreamingResampler {
            soxr,
            in_rate,
            out_rate,
            frames_in: 0,
            emitted: 0,
            pending: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// A resampler to [`TARGET_SAMPLE_RATE`].
    pub fn to_16k(in_rate: u32) -> Result<Self, AudioError> {
        Self::new(in_rate, TARGET_SAMPLE_RATE)
    }

    /// Input samples consumed so far.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output samples handed out so far.
    pub fn frames_out(&self) -> u64 {
        self.emitted
    }

    /// Resamples `input` and appends the output samples that are final to `out`.
    /// Errors on a non-finite sample.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        check_finite(input, self.frames_in)?;
        self.frames_in += input.len() as u64;
        match self.soxr.as_mut() {
            None => self.pending.extend_from_slice(input),
            Some(soxr) => {
                // Room for the expected output plus libsoxr's internal backlog; loop while
                // the buffer comes back full, so nothing is left behind.
                let room = (input.len() as f64 * f64::from(self.out_rate) / f64::from(self.in_rate))
                    as usize
                    + 4096;
                self.scratch.resize(room, 0.0);
                let mut n = soxr.process(Some(input), &mut self.scratch)?;
                self.pending.extend_from_slice(&self.scratch[..n]);
                while n == self.scratch.len() {
                    n = soxr.process(Some(&[]), &mut self.scratch)?;
                    self.pending.extend_from_slice(&self.scratch[..n]);
                }
            }
        }
        // Whatever the rest of the input, the final length is at least
        // ceil(frames_in * ratio), so everything up to there is safe to hand out.
        let safe = resampled_len(self.frames_in, self.in_rate, self.out_rate);
        let can = (safe.saturating_sub(self.emitted) as usize).min(self.pending.len());
        out.extend_from_slice(&self.pending[..can]);
        self.pending.drain(..can);
        self.emitted += can as u64;
        Ok(())
    }

    /// Flushes libsoxr and appends the remaining samples to `out`, so that the whole output
    /// has exactly `ceil(frames_in * out_rate / in_rate)` samples (zero padded or truncated at
    /// the tail, like `librosa.util.fix_length`).
    pub fn finish(mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        if let Some(soxr) = self.soxr.as_mut() {
            self.scratch.resize(4096, 0.0);
            loop {
                let n = soxr.process(None, &mut self.scratch)?;
                if n == 0 {
                    break;
                }
                self.pending.extend_from_slice(&self.scratch[..n]);
            }
        }
        let total = resampled_len(self.frames_in, self.in_rate, self.out_rate);
        let remaining = total.saturating_sub(self.emitted) as usize;
        self.pending.resize(remaining, 0.0);
        out.extend_from_slice(&self.pending);
        self.emitted += remaining as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librosa_length_rule() {
        assert_eq!(resampled_len(101_568, 44_100, 16_000), 36_851);
        assert_eq!(resampled_len(36_850, 16_000, 16_000), 36_850);
        assert_eq!(resampled_len(0, 44_100, 16_000), 0);
        // The ratio is rounded to f64 before the multiplication, as in librosa.
        let ratio = 16_000f64 / 44_100f64;
        assert_eq!(
            resampled_len(44_100, 44_100, 16_000),
            (44_100f64 * ratio).ceil() as u64
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            resample(&[0.0], 0, 16_000),
            Err(AudioError::InvalidInput(_))
        ));
        assert!(matches!(
            resample(&[0.0, f32::NAN], 8_000, 16_000),
            Err(AudioError::InvalidInput(_))
        ));
        assert_eq!(resample(&[], 8_000, 16_000).unwrap(), Vec::<f32>::new());
    }

    /// python-soxr's default engine for `soxr_hq` on f32 is the SIMD `cr32s`; ours must be
    /// too (when the environment does not say otherwise), or parity with librosa is lost.
    #[test]
    fn hq_f32_runs_the_simd_engine() {
        let env_set = ["SOXR_USE_SIMD", "SOXR_USE_SIMD32"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if env_set || !losatok_soxr_sys::HAS_CR32S {
            return;
        }
        let s = Soxr::new(44_100.0, 16_000.0).unwrap();
        // SAFETY: valid handle; libsoxr returns a static string.
        let engine = unsafe { CStr::from_ptr(losatok_soxr_sys::soxr_engine(s.0)) };
        assert_eq!(engine.to_str().unwrap(), "cr32s");
    }

    #[test]
    fn equal_rates_pass_through() {
        let x = [0.5f32, -0.25, 0.0];
        assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
        let mut s = StreamingResampler::new(16_000, 16_000).unwrap();
        let mut out = Vec::new();
        s.process(&x, &mut out).unwrap();
        s.finish(&mut out).unwrap();
        assert_eq!(out, x);
    }
}
