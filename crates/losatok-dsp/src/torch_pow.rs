//! torch's CPU float32 `10 ** e` (`torch.pow(10.0, e)` with a contiguous float32 tensor `e`),
//! reproduced bit for bit.
//!
//! torch does not round `10^e` correctly: about 1–2 % of its results are one ulp away from the
//! correctly rounded value, and which ones depends on where an element sits in the tensor. ATen
//! runs the power through `cpu_kernel_vec` (`aten/src/ATen/native/cpu/PowKernel.cpp`,
//! `cpu/Loops.h`): with the scalar base broadcast, `vectorized_loop` walks the tensor in steps of
//! two SIMD registers and evaluates each register with `Vectorized<float>::pow`, which is SLEEF's
//! `Sleef_powf16_u10` (AVX-512, 2 × 16 lanes = 32 elements per step) or `Sleef_powf8_u10` (AVX2,
//! 2 × 8 = 16). The `n mod 32` (AVX2: `n mod 16`) elements after the last full step go through
//! the scalar lambda `std::pow(float, float)`, i.e. the platform libm's `powf` (glibc on Linux).
//!
//! This module evaluates both algorithms in software:
//!
//! * [`sleef_pow10`] follows SLEEF's `xpowf` (Boost licence): `x^y = exp(y · ln x)` with `ln x`
//!   and the product carried in "double-float" arithmetic (an unevaluated sum of two f32), every
//!   multiply-add fused as in the FMA builds that the x86 AVX2 and AVX-512 kernels are.
//! * [`glibc_pow10`] follows glibc's `powf` (since 2.28; the algorithm of ARM's
//!   optimized-routines): `2^(y · log2 x)` evaluated in f64 with small tables and rounded once.
//!
//! The AVX2 and AVX-512 builds of SLEEF give identical results (checked against torch for every
//! float in `[0, 1.1]` with both capabilities), so the only capability-dependent part is where the
//! tail begins. We follow AVX-512 ([`ATEN_STEP`] = 32), which torch selects on any x86 CPU that
//! has it; whenever `n mod 32 < 16` the AVX2 split is the same.
//!
//! Supported domain: base 10 only, exponents finite with `|e| ≤ 30` (the results are then normal
//! floats and none of the special cases of either library — NaN, infinities, zero or negative
//! bases, overflow, underflow — can occur). Tensors of 32768 elements or more may be split
//! across threads by ATen, which moves the tail; only the single-chunk layout is modelled.

/// Elements per step of ATen's vectorised CPU loop for float32 with AVX-512 (two 16-lane
/// registers).
const ATEN_STEP: usize = 32;

/// Largest `|e|` accepted: keeps every intermediate and result far from overflow and underflow.
const MAX_ABS_EXPONENT: f32 = 30.0;

/// torch's CPU float32 `10 ** e` for the contiguous tensor `e`, bit for bit (AVX-512 layout, see
/// the module docs): SLEEF for the elements covered by full 32-element steps, glibc `powf` for
/// the remaining tail.
///
/// # Panics
/// If an exponent is not finite or `|e| > 30`.
pub(crate) fn pow10_f32_tensor_like(e: &[f32]) -> Vec<f32> {
    assert!(
        e.iter()
            .all(|y| y.is_finite() && y.abs() <= MAX_ABS_EXPONENT),
        "pow10_f32_tensor_like supports finite exponents with |e| <= {MAX_ABS_EXPONENT}"
    );
    let (body, tail) = e.split_at(e.len() - e.len() % ATEN_STEP);
    body.iter()
        .map(|&y| sleef_pow10(y))
        .chain(tail.iter().map(|&y| glibc_pow10(y)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SLEEF xpowf (Boost licence), base 10
// ---------------------------------------------------------------------------------------------

/// A "double-float": the unevaluated sum `hi + lo` of two f32, `|lo|` at most about half an ulp
/// of `hi`, which carries roughly 48 significant bits through f32 operations.
#[derive(Clone, Copy, Debug)]
struct Df {
    hi: f32,
    lo: f32,
}

impl Df {
    const fn new(hi: f32, lo: f32) -> Self {
        Df { hi, lo }
    }

    /// Exact sum of two floats of any magnitudes (Knuth's two-sum).
    fn two_sum(x: f32, y: f32) -> Self {
        let s = x + y;
        let v = s - x;
        Df::new(s, (x - (s - v)) + (y - v))
    }

    /// `self + y` for a double-float whose `hi` dominates `y`'s (the cheap, ordered form).
    fn add(self, y: Df) -> Self {
        let s = self.hi + y.hi;
        Df::new(s, (((self.hi - s) + y.hi) + self.lo) + y.lo)
    }

    /// `self + y` without any ordering assumption (two-sum on the heads).
    fn add_any(self, y: Df) -> Self {
        let s = self.hi + y.hi;
        let v = s - self.hi;
        let t = (self.hi - (s - v)) + (y.hi - v);
        Df::new(s, t + (self.lo + y.lo))
    }

    /// `self + y` for a plain float `y` of any magnitude.
    fn add_any_f(self, y: f32) -> Self {
        let s = self.hi + y;
        let v = s - self.hi;
        let t = (self.hi - (s - v)) + (y - v);
        Df::new(s, t + self.lo)
    }

    /// `x + self` for a plain float `x` that dominates `self`.
    fn add_to_f(self, x: f32) -> Self {
        let s = x + self.hi;
        Df::new(s, ((x - s) + self.hi) + self.lo)
    }

    /// Renormalises so that `hi` is the rounded sum and `lo` the remainder.
    fn normalize(self) -> Self {
        let s = self.hi + self.lo;
        Df::new(s, (self.hi - s) + self.lo)
    }

    /// Multiplies both parts by `s` (exact for the powers of two it is used with).
    fn scale(self, s: f32) -> Self {
        Df::new(self.hi * s, self.lo * s)
    }

    /// `self · y`: the rounding error of `hi · y` is recovered exactly with one fused
    /// multiply-subtract, then the low part's contribution is fused in.
    fn mul_f(self, y: f32) -> Self {
        let s = self.hi * y;
        Df::new(s, self.lo.mul_add(y, self.hi.mul_add(y, -s)))
    }

    /// `self · y` for two double-floats (the `lo · lo` term is negligible and dropped).
    fn mul(self, y: Df) -> Self {
        let s = self.hi * y.hi;
        let err = self.hi.mul_add(y.hi, -s);
        Df::new(s, self.hi.mul_add(y.lo, self.lo.mul_add(y.hi, err)))
    }

    /// `self²`.
    fn square(self) -> Self {
        let s = self.hi * self.hi;
        let err = self.hi.mul_add(self.hi, -s);
        Df::new(s, (self.hi + self.hi).mul_add(self.lo, err))
    }

    /// `self / d`: a quotient from the f32 reciprocal of `d.hi`, corrected with the fused
    /// residuals of the numerator and of `d · (1/d.hi) − 1`.
    fn div(self, d: Df) -> Self {
        let t = 1.0 / d.hi;
        let s = self.hi * t;
        let u = t.mul_add(self.hi, -s);
        let v = (-d.lo).mul_add(t, (-d.hi).mul_add(t, 1.0));
        Df::new(s, s.mul_add(v, self.lo.mul_add(t, u)))
    }
}

/// `ln 2` split as `hi + lo`, `hi` = ln 2 rounded to f32.
const LN2_DF: Df = Df::new(core::f32::consts::LN_2, -1.904_654_2e-9);
/// `ln 2` split so that `q · LN2_HI` is exact for the small integers `q` of the reduction.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// SLEEF's natural logarithm kernel (`logkf`) as a double-float, for a positive normal `d`.
///
/// `d = 2^e · m` with `m ∈ [0.75, 1.5)`; with `x = (m − 1)/(m + 1)` (in double-float),
/// `ln m = 2·atanh(x) = 2x + x³·(c + x²·t(x²))`, where the leading coefficient `c ≈ 2/3` is a
/// double-float and `t` a short polynomial in f32; finally `ln d = e·ln 2 + ln m`.
///
/// (The AVX-512 build obtains `e` and `m` with `getexp`/`getmant` instead of the exponent bits;
/// for normal inputs, and in particular for `d = 10 = 2³ · 1.25`, both give the same pair.)
fn sleef_log_df(d: f32) -> Df {
    debug_assert!(d.is_normal() && d > 0.0);
    // Exponent of d·4/3, so that the mantissa lands in [0.75, 1.5).
    let e = ((d * (1.0f32 / 0.75)).to_bits() >> 23 & 0xff) as i32 - 127;
    let m = f32::from_bits((d.to_bits() as i32 - (e << 23)) as u32);

    let x = Df::two_sum(-1.0, m).div(Df::two_sum(1.0, m));
    let x2 = x.square();

    let t = 0.240_320_35f32
        .mul_add(x2.hi, 0.285_112_68)
        .mul_add(x2.hi, 0.400_008);
    let c = Df::new(0.666_666_6, 3.691_838_6e-9);

    let s = LN2_DF.mul_f(e as f32);
    let s = s.add(x.scale(2.0));
    s.add(x2.mul(x).mul(x2.mul_f(t).add_any(c)))
}

/// SLEEF's exponential kernel (`expkf`) of a double-float argument, for `|d| ≲ 70`.
///
/// `d = q·ln 2 + s` with `q = round(d / ln 2)` (ties to even, like `cvtps2dq`) and the
/// subtraction done in double-float against a two-part `ln 2`; then
/// `e^s = 1 + s + s²·u(s)` with a degree-4 f32 polynomial `u`, the `1 + s + s²·u` assembled in
/// double-float, rounded once, and scaled by `2^q`.
fn sleef_exp_df(d: Df) -> f32 {
    let q = ((d.hi + d.lo) * core::f32::consts::LOG2_E).round_ties_even() as i32;
    let qf = q as f32;

    let s = d.add_any_f(qf * -LN2_HI);
    let s = s.add_any_f(qf * -LN2_LO);
    let s = s.normalize();

    let u = 0.001_363_246_5f32
        .mul_add(s.hi, 0.008_365_969)
        .mul_add(s.hi, 0.041_671_082)
        .mul_add(s.hi, 0.166_665_52)
        .mul_add(s.hi, 0.499_999_85);

    let t = s.add(s.square().mul_f(u));
    let t = t.add_to_f(1.0);
    // 2^q is a normal float in the supported domain (|q| ≤ 100), so this scaling is exact.
    (t.hi + t.lo) * f32::from_bits(((q + 127) as u32) << 23)
}

/// SLEEF `xpowf(10, y)` (Boost licence): `exp(y · ln 10)` with `ln 10` and the product in
/// double-float. For a positive finite base and finite `y` the special-case selections of
/// `xpowf` reduce to `y = 0 → 1` (which the kernel also returns).
fn sleef_pow10(y: f32) -> f32 {
    if y == 0.0 {
        return 1.0;
    }
    sleef_exp_df(sleef_log_df(10.0).mul_f(y))
}

// ---------------------------------------------------------------------------------------------
// glibc powf (the optimized-routines algorithm), base 10
// ---------------------------------------------------------------------------------------------

/// Size of the table of `2^(i/32)` used by the final `exp2`.
const EXP2_TABLE_BITS: u32 = 5;

/// Bit patterns of `2^(i/32)` with `i << (52 − 5)` subtracted, so that adding `k << 47` for
/// `k ≡ i (mod 32)` yields `2^(k/32)` directly (glibc `__exp2f_data.tab`).
const EXP2_TABLE: [u64; 1 << EXP2_TABLE_BITS] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// glibc's `log2` of the base 10, in f64 (`log2_inline`).
///
/// The argument is reduced to `10 = 2^k · z` with `z` in the sub-interval of `[0.7, 1.4)` that
/// holds it (here `k = 3`, `z = 1.25`, sub-interval 13 of 16), whose centre `c` is tabulated as
/// `1/c` and `log2 c`; then `log2 10 = k + log2 c + log1p(r)/ln 2` with `r = z/c − 1` and a
/// degree-5 polynomial for the last term.
fn glibc_log2_of_ten() -> f64 {
    // Table entry 13 of glibc `__powf_log2_data.tab`: 1/c and log2(c).
    let inv_c = f64::from_bits(0x3fe9c2d163a1aa2d);
    let log2_c = f64::from_bits(0x3fd40645f0c6651c);
    // `__powf_log2_data.poly`, highest degree first (A[4] ≈ 1/ln 2).
    let a: [f64; 5] = [
        0.288_457_581_109_214,
        -0.360_926_062_297_131_64,
        0.480_898_481_472_577,
        -0.721_347_467_500_629_1,
        1.442_695_040_877_434_2,
    ];
    let (k, z) = (3.0f64, 1.25f64);
    // glibc's x86-64 libm picks a variant compiled for FMA at run time, where each `a·b + c`
    // is fused; written out that way here (the unfused variant rounds the same for every
    // exponent in [0, 1.1]).
    let r = z.mul_add(inv_c, -1.0);
    let y0 = log2_c + k;
    let r2 = r * r;
    let r4 = r2 * r2;
    let y = a[0].mul_add(r, a[1]);
    let p = a[2].mul_add(r, a[3]);
    let q = a[4].mul_add(r, y0);
    let q = p.mul_add(r2, q);
    y.mul_add(r4, q)
}

/// glibc `powf(10, y)`: `2^(y · log2 10)` in f64, rounded once to f32.
///
/// `x = y · log2 10` is split as `k/32 + r` with `|r| ≤ 1/64` by adding and subtracting a
/// shifter `1.5 · 2^47` (which rounds to a multiple of 1/32 and leaves `k` in the low bits);
/// `2^(k/32)` comes from [`EXP2_TABLE`] with `k >> 5` added to the exponent field, and
/// `2^r ≈ 1 + r·(C2 + r·C1 + r²·C0)`.
fn glibc_pow10(y: f32) -> f32 {
    const SHIFT: f64 = 211_106_232_532_992.0; // 0x1.8p52 / 32
    const C: [f64; 3] = [
        0.055_503_615_593_415_35,
        0.240_228_452_244_572_2,
        0.693_147_180_691_620_3,
    ];
    let x = f64::from(y) * glibc_log2_of_ten();

    let kd = x + SHIFT;
    let ki = kd.to_bits();
    let r = x - (kd - SHIFT);

    let t = EXP2_TABLE[(ki % (1 << EXP2_TABLE_BITS)) as usize]
        .wrapping_add(ki << (52 - EXP2_TABLE_BITS));
    let s = f64::from_bits(t);

    let z = C[0].mul_add(r, C[1]);
    let r2 = r * r;
    let p = C[2].mul_add(r, 1.0);
    (z.mul_add(r2, p) * s) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exponents of 10 paired with torch's float32 result where it differs from the correctly
    /// rounded `10^e` — on the vectorised path (SLEEF). Bit patterns generated with torch 2.15
    /// (CPU, AVX-512): `10 ** (torch.linspace(0, 2595·log10(1 + 8000/700), n) / 2595)` for
    /// n = 66 and 67 (the semantic and MFD mel points), elements inside the first 64.
    const TORCH_VECTOR_PATH: [(u32, u32); 7] = [
        (0x3e09ee45, 0x3fae8b94), // n = 66, element 8
        (0x3ef160f9, 0x403d8188), // n = 66, element 28
        (0x3d87d744, 0x3f951ef3), // n = 67, element 4
        (0x3e18d22c, 0x3fb47d05), // n = 67, element 9
        (0x3e3ac7fe, 0x3fc2cf9e), // n = 67, element 11
        (0x3f29cd15, 0x40936104), // n = 67, element 40
        (0x3f83988a, 0x412ab119), // n = 67, element 62
    ];

    /// Exponents whose glibc `powf` result is not correctly rounded, with torch's result when
    /// the element is in the scalar tail (`10 ** torch.full((33,), e)`, element 32) and when it is
    /// on the vectorised path (element 0); torch 2.15, CPU, AVX-512.
    const TORCH_TAIL_VS_VECTOR: [(u32, u32, u32); 3] = [
        (0x384df3d8, 0x3f8003b5, 0x3f8003b4),
        (0x385d95d5, 0x3f8003fd, 0x3f8003fc),
        (0x387508c0, 0x3f800469, 0x3f800468),
    ];

    fn correctly_rounded(e: f32) -> f32 {
        10f64.powf(f64::from(e)) as f32
    }

    #[test]
    fn vector_path_matches_torch_where_it_is_not_correctly_rounded() {
        for (e_bits, want) in TORCH_VECTOR_PATH {
            let e = f32::from_bits(e_bits);
            assert_ne!(
                correctly_rounded(e).to_bits(),
                want,
                "test pair is not a witness"
            );
            // 32 copies: one full vector step, no tail.
            let got = pow10_f32_tensor_like(&[e; 32]);
            assert!(got.iter().all(|p| p.to_bits() == want), "e = {e:e}");
        }
    }

    #[test]
    fn tail_takes_the_scalar_libm_path() {
        for (e_bits, tail, vector) in TORCH_TAIL_VS_VECTOR {
            let e = f32::from_bits(e_bits);
            let got = pow10_f32_tensor_like(&[e; 33]);
            assert_eq!(got[0].to_bits(), vector, "vector path, e = {e:e}");
            assert_eq!(got[31].to_bits(), vector, "vector path, e = {e:e}");
            assert_eq!(got[32].to_bits(), tail, "tail, e = {e:e}");
            // Shorter than one step: everything is tail.
            assert_eq!(pow10_f32_tensor_like(&[e])[0].to_bits(), tail);
        }
    }

    #[test]
    fn exact_points() {
        let got = pow10_f32_tensor_like(&[0.0, 1.0, 2.0, -1.0]);
        assert_eq!(got, [1.0, 10.0, 100.0, 0.1]);
        let got = pow10_f32_tensor_like(&[1.0; 32]);
        assert!(got.iter().all(|&p| p == 10.0));
    }

    #[test]
    #[should_panic]
    fn rejects_exponents_outside_the_domain() {
        pow10_f32_tensor_like(&[f32::NAN]);
    }
}
