//! A symmetric eigen-solver in `f64` on the host: Householder reduction to tridiagonal form,
//! then the implicit QL algorithm with Wilkinson-style shifts (the classical EISPACK
//! `tred2` / `tql2` pair, written from the textbook algorithm).
//!
//! Cost for a `d × d` matrix: about `4/3·d³` flops for the eigenvalues alone, about `9·d³` with
//! the eigenvectors (d = 1280: about a second, respectively ten, on one core). Accuracy: the
//! eigenvalues are exact up to a small multiple of `ε·‖A‖₂` (backward stable), the eigenvectors
//! orthonormal to rounding.

/// Eigen-decomposition of a symmetric matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetricEigen {
    /// Matrix size `d`.
    pub dim: usize,
    /// Eigenvalues in descending order.
    pub values: Vec<f64>,
    /// Eigenvectors (when asked for): `d` vectors of length `d`, vector `k` at
    /// `vectors[k·d .. (k+1)·d]`, for `values[k]`; unit length, mutually orthogonal.
    pub vectors: Option<Vec<f64>>,
}

impl SymmetricEigen {
    /// Eigenvector `k` (for `values[k]`), if vectors were computed.
    pub fn vector(&self, k: usize) -> Option<&[f64]> {
        self.vectors
            .as_ref()
            .map(|v| &v[k * self.dim..(k + 1) * self.dim])
    }
}

/// Eigenvalues (descending) and, with `vectors`, the eigenvectors of the symmetric `d × d`
/// matrix `a` (row-major; only the lower triangle is read, so a matrix that is symmetric up to
/// rounding is fine).
///
/// # Panics
/// If `a.len() != d·d`, or if the matrix holds NaN or infinite values.
pub fn symmetric_eigen(a: &[f64], d: usize, vectors: bool) -> SymmetricEigen {
    assert_eq!(a.len(), d * d, "symmetric_eigen: expected a {d}×{d} matrix");
    assert!(
        a.iter().all(|v| v.is_finite()),
        "symmetric_eigen: the matrix holds NaN or infinite values"
    );
    if d == 0 {
        return SymmetricEigen {
            dim: 0,
            values: Vec::new(),
            vectors: vectors.then(Vec::new),
        };
    }
    // Column-major working copy of the lower triangle: v[j·d + k] = A[k][j] for k ≥ j. Every
    // inner loop below then runs along contiguous memory.
    let mut v = vec![0f64; d * d];
    for j in 0..d {
        for k in j..d {
            let x = a[k * d + j];
            v[j * d + k] = x;
            v[k * d + j] = x;
        }
    }
    let mut diag = vec![0f64; d];
    let mut off = vec![0f64; d];
    tridiagonalize(&mut v, d, &mut diag, &mut off, vectors);
    tql(
        &mut diag,
        &mut off,
        if vectors { Some(&mut v) } else { None },
        d,
    );

    // Descending order (a stable sort of indices keeps equal eigenvalues in a fixed order).
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| diag[j].total_cmp(&diag[i]));
    let values = order.iter().map(|&i| diag[i]).collect();
    let vectors = vectors.then(|| {
        let mut out = vec![0f64; d * d];
        for (k, &i) in order.iter().enumerate() {
            out[k * d..(k + 1) * d].copy_from_slice(&v[i * d..(i + 1) * d]);
        }
        out
    });
    SymmetricEigen {
        dim: d,
        values,
        vectors,
    }
}

/// Eigenvalues only, descending: [`symmetric_eigen`] without vectors.
pub fn symmetric_eigenvalues(a: &[f64], d: usize) -> Vec<f64> {
    symmetric_eigen(a, d, false).values
}

/// Householder reduction of the symmetric matrix in `v` (column-major, `v[j·n + k]` is row `k`,
/// column `j`) to tridiagonal form: diagonal in `diag`, sub-diagonal in `off[1..]`. With
/// `accumulate`, `v` ends up holding the orthogonal transformation `Q` (column-major) such that
/// `A = Q·T·Qᵀ`; otherwise its content is left undefined.
fn tridiagonalize(v: &mut [f64], n: usize, diag: &mut [f64], off: &mut [f64], accumulate: bool) {
    let at = |k: usize, j: usize| j * n + k; // row k, column j
    for j in 0..n {
        diag[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        // Scale row i's part left of the diagonal (held in diag[..i]) to avoid under/overflow.
        let scale: f64 = diag[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            off[i] = diag[i - 1];
            for j in 0..i {
                diag[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for x in diag[..i].iter_mut() {
                *x /= scale;
                h += *x * *x;
            }
            let f = diag[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            off[i] = scale * g;
            h -= f * g;
            diag[i - 1] = f - g;
            for x in off[..i].iter_mut() {
                *x = 0.0;
            }
            // p = A·u (lower triangle only), accumulated in off[..i].
            for j in 0..i {
                let f = diag[j];
                v[at(j, i)] = f;
                let col = &v[j * n..j * n + i];
                let mut g = off[j] + col[j] * f;
                for k in j + 1..i {
                    g += col[k] * diag[k];
                    off[k] += col[k] * f;
                }
                off[j] = g;
            }
            let mut f = 0.0;
            for j in 0..i {
                off[j] /= h;
                f += off[j] * diag[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                off[j] -= hh * diag[j];
            }
            // A ← A − u·qᵀ − q·uᵀ on the lower triangle.
            for j in 0..i {
                let (f, g) = (diag[j], off[j]);
                let col = &mut v[j * n..j * n + i];
                for k in j..i {
                    col[k] -= f * off[k] + g * diag[k];
                }
                diag[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        diag[i] = h;
    }

    if !accumulate {
        // The reduction leaves the tridiagonal's diagonal on the diagonal of `v`.
        for (j, d) in diag.iter_mut().enumerate() {
            *d = v[at(j, j)];
        }
        off[0] = 0.0;
        return;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = diag[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                diag[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let (cj, ci) = split_cols(v, n, j, i + 1);
                let g: f64 = (0..=i).map(|k| ci[k] * cj[k]).sum();
                for k in 0..=i {
                    cj[k] -= g * diag[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        diag[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    off[0] = 0.0;
}

/// Two distinct columns `a` and `b` of the column-major `n × n` matrix `v`, `a` mutable.
fn split_cols(v: &mut [f64], n: usize, a: usize, b: usize) -> (&mut [f64], &[f64]) {
    debug_assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b * n);
        (&mut lo[a * n..(a + 1) * n], &hi[..n])
    } else {
        let (lo, hi) = v.split_at_mut(a * n);
        (&mut hi[..n], &lo[b * n..(b + 1) * n])
    }
}

/// Implicit QL iteration on the symmetric tridiagonal matrix (`diag`, sub-diagonal `off[1..]`),
/// rotating the columns of `v` (column-major) along when given. On return `diag` holds the
/// eigenvalues (unsorted) and column `k` of `v` the eigenvector of `diag[k]`.
fn tql(diag: &mut [f64], off: &mut [f64], mut v: Option<&mut [f64]>, n: usize) {
    for i in 1..n {
        off[i - 1] = off[i];
    }
    off[n - 1] = 0.0;
    let eps = f64::EPSILON;
    let mut f = 0.0;
    let mut tst1 = 0f64;
    for l in 0..n {
        tst1 = tst1.max(diag[l].abs() + off[l].abs());
        let mut m = l;
        while m < n {
            if off[m].abs() <= eps * tst1 {
                break;
            }
            m += 1;
        }
        let m = m.min(n - 1);
        if m > l {
            let mut iterations = 0;
            loop {
                iterations += 1;
                assert!(
                    iterations <= 200,
                    "symmetric_eigen: the QL iteration did not converge"
                );
                // Shift from the leading 2×2 block.
                let g = diag[l];
                let mut p = (diag[l + 1] - g) / (2.0 * off[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                diag[l] = off[l] / (p + r);
                diag[l + 1] = off[l] * (p + r);
                let dl1 = diag[l + 1];
                let mut h = g - diag[l];
                for x in diag[l + 2..n].iter_mut() {
                    *x -= h;
                }
                f += h;
                // Implicit QL sweep from m down to l.
                p = diag[m];
                let (mut c, mut c2, mut c3) = (1.0f64, 1.0f64, 1.0f64);
                let el1 = off[l + 1];
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * off[i];
                    h = c * p;
                    r = p.hypot(off[i]);
                    off[i + 1] = s * r;
                    s = off[i] / r;
                    c = p / r;
                    p = c * diag[i] - s * g;
                    diag[i + 1] = h + s * (c * g + s * diag[i]);
                    if let Some(v) = v.as_deref_mut() {
                        let (ci, ci1) = {
                            let (lo, hi) = v.split_at_mut((i + 1) * n);
                            (&mut lo[i * n..], &mut hi[..n])
                        };
                        for k in 0..n {
                            let hk = ci1[k];
                            ci1[k] = s * ci[k] + c * hk;
                            ci[k] = c * ci[k] - s * hk;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * off[l] / dl1;
                off[l] = s * p;
                diag[l] = c * p;
                if off[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        diag[l] += f;
        off[l] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random generator (SplitMix64) for test matrices.
    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    /// A random orthogonal matrix (product of Householder reflections), row-major.
    fn orthogonal(d: usize, seed: u64) -> Vec<f64> {
        let mut r = rng(seed);
        let mut q = vec![0f64; d * d];
        for i in 0..d {
            q[i * d + i] = 1.0;
        }
        for _ in 0..4 {
            let u: Vec<f64> = (0..d).map(|_| r()).collect();
            let nn: f64 = u.iter().map(|x| x * x).sum();
            // q ← q·(I − 2uuᵀ/‖u‖²)
            for row in 0..d {
                let dot: f64 = (0..d).map(|k| q[row * d + k] * u[k]).sum();
                for k in 0..d {
                    q[row * d + k] -= 2.0 * dot * u[k] / nn;
                }
            }
        }
        q
    }

    fn with_spectrum(q: &[f64], lambda: &[f64]) -> Vec<f64> {
        let d = lambda.len();
        let mut a = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d)
                    .map(|k| q[i * d + k] * lambda[k] * q[j * d + k])
                    .sum();
            }
        }
        a
    }

    fn check(a: &[f64], d: usize, expected: &[f64], tol: f64) {
        let e = symmetric_eigen(a, d, true);
        let vals_only = symmetric_eigenvalues(a, d);
        let norm = expected.iter().fold(0f64, |m, x| m.max(x.abs())).max(1.0);
        for (k, (x, y)) in e.values.iter().zip(expected).enumerate() {
            assert!((x - y).abs() <= tol * norm, "λ{k}: {x} vs {y}");
            assert!((vals_only[k] - y).abs() <= tol * norm, "λ{k} (values only)");
        }
        let v = e.vectors.as_ref().unwrap();
        // A·v_k = λ_k·v_k and VᵀV = I.
        for k in 0..d {
            let vk = &v[k * d..(k + 1) * d];
            for i in 0..d {
                let av: f64 = (0..d).map(|j| a[i * d + j] * vk[j]).sum();
                assert!((av - e.values[k] * vk[i]).abs() <= tol * norm, "A·v{k}");
            }
            for l in 0..d {
                let dot: f64 = (0..d).map(|i| vk[i] * v[l * d + i]).sum();
                let want = if k == l { 1.0 } else { 0.0 };
                assert!((dot - want).abs() <= tol, "v{k}·v{l} = {dot}");
            }
        }
    }

    #[test]
    fn known_small_matrices() {
        check(&[], 0, &[], 1e-12);
        check(&[3.5], 1, &[3.5], 1e-15);
        // [[2, 1], [1, 2]] → 3, 1.
        check(&[2.0, 1.0, 1.0, 2.0], 2, &[3.0, 1.0], 1e-14);
        // Diagonal, unsorted, with a negative and a zero entry.
        check(
            &[1.0, 0.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0],
            3,
            &[1.0, 0.0, -2.0],
            1e-14,
        );
        // The 3×3 second-difference matrix: 2 − √2, 2, 2 + √2.
        let s = 2f64.sqrt();
        check(
            &[2.0, -1.0, 0.0, -1.0, 2.0, -1.0, 0.0, -1.0, 2.0],
            3,
            &[2.0 + s, 2.0, 2.0 - s],
            1e-14,
        );
        // Zero matrix.
        check(&[0.0; 16], 4, &[0.0; 4], 1e-15);
    }

    #[test]
    fn second_difference_matrix_closed_form() {
        // Eigenvalues of tridiag(−1, 2, −1) of size n: 2 − 2cos(kπ/(n+1)).
        let n = 60;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            a[i * n + i] = 2.0;
            if i + 1 < n {
                a[i * n + i + 1] = -1.0;
                a[(i + 1) * n + i] = -1.0;
            }
        }
        let mut want: Vec<f64> = (1..=n)
            .map(|k| 2.0 - 2.0 * (k as f64 * std::f64::consts::PI / (n + 1) as f64).cos())
            .collect();
        want.sort_by(|a, b| b.total_cmp(a));
        check(&a, n, &want, 1e-12);
    }

    #[test]
    fn random_rotations_of_known_spectra() {
        for (d, seed) in [(5usize, 1u64), (17, 2), (64, 3)] {
            let q = orthogonal(d, seed);
            // Distinct, repeated and zero eigenvalues, spanning six orders of magnitude.
            let mut lambda: Vec<f64> = (0..d)
                .map(|i| match i % 4 {
                    0 => 1e3 / (i + 1) as f64,
                    1 => 1.0,
                    2 => 1e-3 * i as f64,
                    _ => 0.0,
                })
                .collect();
            let a = with_spectrum(&q, &lambda);
            lambda.sort_by(|a, b| b.total_cmp(a));
            check(&a, d, &lambda, 1e-11);
        }
    }

    #[test]
    fn large_matrix_eigenvalues() {
        // d = 300, a random rotation of 1..=300: values only, and the trace identity.
        let d = 300;
        let q = orthogonal(d, 9);
        let lambda: Vec<f64> = (1..=d).map(|i| i as f64).collect();
        let a = with_spectrum(&q, &lambda);
        let vals = symmetric_eigenvalues(&a, d);
        for (k, x) in vals.iter().enumerate() {
            let want = (d - k) as f64;
            assert!((x - want).abs() < 1e-9, "λ{k}: {x} vs {want}");
        }
    }

    /// The full-size case (d = 1280, the semantic features): time and accuracy.
    /// `cargo test --release -p losatok-eval -- --ignored --nocapture eigen_1280`
    #[test]
    #[ignore = "slow (seconds); run by hand"]
    fn eigen_1280() {
        let d = 1280;
        let q = orthogonal(d, 11);
        let lambda: Vec<f64> = (0..d).map(|i| 0.99f64.powi(i as i32)).collect();
        let a = with_spectrum(&q, &lambda);
        let t = std::time::Instant::now();
        let vals = symmetric_eigenvalues(&a, d);
        let t_vals = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let e = symmetric_eigen(&a, d, true);
        let t_vecs = t.elapsed().as_secs_f64();
        let err = vals
            .iter()
            .zip(&lambda)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        let v0 = e.vector(0).unwrap();
        let res: f64 = (0..d)
            .map(|i| {
                ((0..d).map(|j| a[i * d + j] * v0[j]).sum::<f64>() - e.values[0] * v0[i]).abs()
            })
            .fold(0.0, f64::max);
        println!("d={d}: values {t_vals:.2} s, with vectors {t_vecs:.2} s, max |Δλ| {err:.2e}, residual {res:.2e}");
        assert!(err < 1e-12 && res < 1e-12);
    }
}
