//! Raw FFI to libsoxr, built the way python-soxr builds its bundled copy, so that resampling
//! is bit-identical to `soxr.resample` (and hence `librosa.resample(..., res_type="soxr_hq")`).
//! The C sources are libsoxr 0.1.3 as shipped in the crates.io package `soxr-sys` 0.1.3,
//! compiled in place by `build.rs` (nothing of libsoxr is copied into this repository).
//!
//! # Why not `soxr-sys`
//!
//! The crates.io `soxr-sys` compiles only libsoxr's portable engines. python-soxr's CMake
//! build also compiles the SIMD ones, and libsoxr picks them at run time, so `soxr_hq` on
//! f32 runs `cr32s` (SSE + PFFFT) in python-soxr and `cr32` (scalar + Ooura FFT) with
//! `soxr-sys`: same filter, outputs a few 1e-7 apart, which moves LoSATok's tokens in quiet
//! passages. This crate compiles the same engines with the same configuration as
//! python-soxr 1.1 (whose libsoxr, `0.1.3-14-ga66f3ee`, differs from 0.1.3 only in ways that
//! do not touch float32 resampling on x86-64; see `build.rs`).
//!
//! Licences: libsoxr is LGPL-2.1-or-later and is linked statically; PFFFT (in `pffft.c`) is
//! under its own BSD-style licence, whose notice binary distributions must reproduce.
//!
//! | target              | engines compiled                                | SIMD DFT     |
//! |---------------------|-------------------------------------------------|--------------|
//! | x86-64              | `cr32`, `cr32s`, `cr64`, `cr64s` (AVX), `vr32`  | PFFFT (SSE)  |
//! | aarch64 (GCC/Clang) | `cr32`, `cr32s`, `cr64`, `vr32`                 | PFFFT (NEON) |
//! | others              | `cr32`, `cr64`, `vr32`                          | -            |
//!
//! Bit-exactness with python-soxr is verified on x86-64 (Linux, GCC) only. On aarch64 the
//! engine choice matches python-soxr's but compilers are free to fuse multiply-adds there,
//! so the last bit may differ.
//!
//! # Run-time engine selection
//!
//! As in every libsoxr build, [`soxr_create`] picks the engine: for precision <= 20 bits
//! (`SOXR_HQ` and below, without `SOXR_DOUBLE_PRECISION`) it takes `cr32s` when compiled in
//! and SIMD is wanted, else `cr32`; above 20 bits `cr64s` / `cr64` likewise. "SIMD is wanted" is, in order:
//!
//! 1. the environment variable `SOXR_USE_SIMD`, if set (`atoi(value) != 0`; so `0` or any
//!    non-numeric value disables SIMD);
//! 2. else `SOXR_USE_SIMD32` (for `cr32s`) / `SOXR_USE_SIMD64` (for `cr64s`), same rule;
//! 3. else the CPU: always true for `cr32s` on x86-64 (SSE is baseline) and aarch64 (NEON
//!    is baseline); for `cr64s`, CPUID reports AVX and the OS saves the AVX state (XGETBV).
//!
//! python-soxr reads the same variables, so in a given environment both libraries run the
//! same engine. libsoxr also reads `SOXR_MIN_DFT_SIZE`, `SOXR_LARGE_DFT_SIZE`,
//! `SOXR_COEFS_SIZE`, `SOXR_NUM_THREADS`, `SOXR_COEF_INTERP`, `SOXR_STRICT_BUF`,
//! `SOXR_NOSMALLINTOPT` (which can change the output) and `SOXR_TRACE` (debug output on
//! stderr) in every `soxr_create`, with C `getenv`: do not modify the environment from
//! another thread while creating resamplers. [`soxr_engine`] reports the engine chosen.
//!
//! Only the items `losatok-audio` uses (plus [`soxr_engine`] and [`soxr_version`] for
//! checks) are declared.

#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_double, c_uint, c_ulong, c_void};

/// Whether the single-precision SIMD engine `cr32s` is compiled in for this target.
pub const HAS_CR32S: bool = cfg!(soxr_cr32s);
/// Whether the double-precision AVX engine `cr64s` is compiled in for this target.
pub const HAS_CR64S: bool = cfg!(soxr_cr64s);

/// Opaque resampler state (`struct soxr`).
#[repr(C)]
pub struct soxr {
    _private: [u8; 0],
}

/// A resampler handle, as returned by [`soxr_create`].
pub type soxr_t = *mut soxr;
/// `NULL` for success, else a static NUL-terminated message.
pub type soxr_error_t = *const c_char;
/// Input buffer(s): one interleaved buffer, or an array of per-channel pointers.
pub type soxr_in_t = *const c_void;
/// Output buffer(s), as [`soxr_in_t`].
pub type soxr_out_t = *mut c_void;

/// Sample formats (`soxr_datatype_t`, a C enum).
pub type soxr_datatype_t = c_uint;
/// 32-bit float, one buffer per channel.
pub const SOXR_FLOAT32_S: soxr_datatype_t = 4;
/// 64-bit float, one buffer per channel.
pub const SOXR_FLOAT64_S: soxr_datatype_t = 5;

/// Quality recipe: 20-bit precision.
pub const SOXR_20_BITQ: c_ulong = 4;
/// `SOXR_HQ`, python-soxr's and librosa's default (an alias of [`SOXR_20_BITQ`]).
pub const SOXR_HQ: c_ulong = SOXR_20_BITQ;
/// Quality recipe: 28-bit precision (`SOXR_VHQ`).
pub const SOXR_VHQ: c_ulong = 6;

/// `struct soxr_io_spec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct soxr_io_spec_t {
    /// Input datatype.
    pub itype: soxr_datatype_t,
    /// Output datatype.
    pub otype: soxr_datatype_t,
    /// Linear gain applied while resampling.
    pub scale: c_double,
    /// Reserved for libsoxr.
    pub e: *mut c_void,
    /// `SOXR_TPDF`, `SOXR_NO_DITHER`.
    pub flags: c_ulong,
}

/// `struct soxr_quality_spec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct soxr_quality_spec_t {
    /// Conversion precision in bits.
    pub precision: c_double,
    /// 0 = minimum, 50 = linear, 100 = maximum phase.
    pub phase_response: c_double,
    /// 0 dB point of the pass band (Nyquist = 1).
    pub passband_end: c_double,
    /// Start of the stop band (Nyquist = 1).
    pub stopband_begin: c_double,
    /// Reserved for libsoxr.
    pub e: *mut c_void,
    /// `SOXR_ROLLOFF_*`, `SOXR_HI_PREC_CLOCK`, `SOXR_DOUBLE_PRECISION`, `SOXR_VR`.
    pub flags: c_ulong,
}

/// `struct soxr_runtime_spec`, only passed as NULL (defaults) here.
#[repr(C)]
pub struct soxr_runtime_spec_t {
    _private: [u8; 0],
}

extern "C" {
    /// `"libsoxr-0.1.3"`.
    pub fn soxr_version() -> *const c_char;

    /// Creates a stream resampler. The three spec pointers may be NULL (defaults).
    pub fn soxr_create(
        input_rate: c_double,
        output_rate: c_double,
        num_channels: c_uint,
        error: *mut soxr_error_t,
        io_spec: *const soxr_io_spec_t,
        quality_spec: *const soxr_quality_spec_t,
        runtime_spec: *const soxr_runtime_spec_t,
    ) -> soxr_t;

    /// Resamples `ilen` input samples per channel (`input` NULL: end of input, flush)
    /// into at most `olen` output samples per channel.
    pub fn soxr_process(
        resampler: soxr_t,
        input: soxr_in_t,
        ilen: usize,
        idone: *mut usize,
        output: soxr_out_t,
        olen: usize,
        odone: *mut usize,
    ) -> soxr_error_t;

    /// Name of the engine the resampler runs (`"cr32s"`, `"cr32"`, ...).
    pub fn soxr_engine(resampler: soxr_t) -> *const c_char;

    /// Frees a resampler.
    pub fn soxr_delete(resampler: soxr_t);

    /// I/O spec with the given datatypes and defaults elsewhere.
    pub fn soxr_io_spec(itype: soxr_datatype_t, otype: soxr_datatype_t) -> soxr_io_spec_t;

    /// Quality spec for a recipe (`SOXR_HQ`, ...) and flags.
    pub fn soxr_quality_spec(recipe: c_ulong, flags: c_ulong) -> soxr_quality_spec_t;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::ptr;

    fn engine(recipe: c_ulong, itype: soxr_datatype_t) -> String {
        let mut err: soxr_error_t = ptr::null();
        // SAFETY: valid spec pointers, NULL runtime spec; the handle is deleted below.
        unsafe {
            let io = soxr_io_spec(itype, itype);
            let q = soxr_quality_spec(recipe, 0);
            let h = soxr_create(44_100.0, 16_000.0, 1, &mut err, &io, &q, ptr::null());
            assert!(err.is_null() && !h.is_null());
            let name = CStr::from_ptr(soxr_engine(h)).to_str().unwrap().to_owned();
            soxr_delete(h);
            name
        }
    }

    #[test]
    fn version() {
        // SAFETY: static string.
        let v = unsafe { CStr::from_ptr(soxr_version()) };
        assert_eq!(v.to_str().unwrap(), "libsoxr-0.1.3");
    }

    /// The engine libsoxr picks for python-soxr's default (`HQ`, f32), given the
    /// environment (see the crate docs).
    #[test]
    fn hq_engine_follows_build_and_environment() {
        let simd_env = std::env::var("SOXR_USE_SIMD")
            .or_else(|_| std::env::var("SOXR_USE_SIMD32"))
            .ok()
            .map(|v| v.trim().parse::<i64>().is_ok_and(|n| n != 0));
        let want = if HAS_CR32S && simd_env.unwrap_or(true) {
            "cr32s"
        } else {
            "cr32"
        };
        assert_eq!(engine(SOXR_HQ, SOXR_FLOAT32_S), want);
        // Above 20 bits the double-precision engines run.
        assert!(engine(SOXR_VHQ, SOXR_FLOAT64_S).starts_with("cr64"));
    }
}
