//! f32 GEMM with AVX-512 for the CPU fast path: C = A·B (+ bias), then an elementwise epilogue
//! (the MLP's activation) on each finished tile while it is still in L1.
//!
//! Why not only the `gemm` crate: at the backbone's shapes (M = batch·tokens, K and N = 384…1536)
//! its AVX-512 kernels reach ~128 GFLOP/s on two cores of this project's Xeon where MKL (PyTorch's
//! BLAS) reaches 170–215, and it repacks the weights on every call. Here B (a weight matrix) is
//! packed once at load time into 32-column panels; A is read in place (12 row streams, broadcast
//! loads; packing it cost more than it saved at these depths); a 12×32 register tile (24 zmm
//! accumulators) does 24 FMAs per two B loads. BLIS's loop order: K blocks, then B panels, then
//! 12-row tiles, with row blocks of C spread over threads.
//! Callers fall back to the `gemm` crate when the CPU has no AVX-512 ([`available`]).

use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile (two zmm vectors).
const NR: usize = 32;
/// Depth of one block: a B micro-panel is KC×32 floats, the A rows of a task MC×KC.
const KC: usize = 256;
/// Rows per parallel task (its A block, 192×256 floats, stays in L2 across B panels).
const MC: usize = 16 * MR;

/// True when this CPU runs the AVX-512 kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A row-major [k, n] matrix packed as ⌈n/32⌉ panels of [k][32] (zero-padded columns).
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    pub fn new(b: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(b.len(), k * n, "PackedB::new: b is not k×n");
        let mut packed = Self::empty();
        packed.repack(b, n, k, n, false);
        packed
    }

    /// An empty matrix to [`Self::repack`] into (attention packs K and V per head).
    pub fn empty() -> Self {
        PackedB {
            data: Vec::new(),
            k: 0,
            n: 0,
        }
    }

    /// Packs the k×n matrix B[kk][j] = src[kk·ld + j], or with `transposed` src[j·ld + kk],
    /// reusing this matrix's allocation.
    pub fn repack(&mut self, src: &[f32], ld: usize, k: usize, n: usize, transposed: bool) {
        let panels = n.div_ceil(NR);
        self.data.clear();
        self.data.resize(panels * k * NR, 0.0);
        self.k = k;
        self.n = n;
        for (p, panel) in self.data.chunks_mut(k * NR).enumerate() {
            let c0 = p * NR;
            let cols = NR.min(n - c0);
            if transposed {
                for j in 0..cols {
                    let col = &src[(c0 + j) * ld..(c0 + j) * ld + k];
                    for (dst, &v) in panel.chunks_exact_mut(NR).zip(col) {
                        dst[j] = v;
                    }
                }
            } else {
                for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    dst[..cols].copy_from_slice(&src[kk * ld + c0..kk * ld + c0 + cols]);
                }
            }
        }
    }
}

/// c[m×n] = a[m×k]·B (+ bias), then `epilogue` on each finished block of whole rows of C, with
/// row blocks spread over rayon's threads. Row-major, contiguous A and C.
/// Panics if the CPU has no AVX-512 (check [`available`]) or the slices do not match the shapes.
pub fn gemm<F>(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>, c: &mut [f32], epilogue: F)
where
    F: Fn(&mut [f32]) + Sync + Send,
{
    let (k, n) = (b.k, b.n);
    assert!(
        available(),
        "sgemm_avx512::gemm called on a CPU without AVX-512"
    );
    assert!(
        a.len() >= m * k && c.len() >= m * n,
        "sgemm_avx512::gemm: slice sizes"
    );
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "sgemm_avx512::gemm: bias length");
    }
    if m == 0 || n == 0 {
        return;
    }
    c[..m * n]
        .par_chunks_mut(MC * n)
        .zip(a[..m * k].par_chunks(MC * k))
        .for_each(|(c_rows, a_rows)| {
            let rows = c_rows.len() / n;
            // SAFETY: `available()` checked AVX-512 above; a_rows holds rows×k and c_rows rows×n.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                block(a_rows.as_ptr(), k, rows, b, bias, c_rows.as_mut_ptr(), n);
            }
            epilogue(c_rows);
        });
}

/// c = a·B on the calling thread, for strided row-major views: row i of A starts at a[i·lda],
/// row i of C at c[i·ldc] (attention reads Q, K and V in place from the packed qkv rows and
/// writes each head's output into its columns).
pub fn gemm_strided(a: &[f32], lda: usize, m: usize, b: &PackedB, c: &mut [f32], ldc: usize) {
    let (k, n) = (b.k, b.n);
    assert!(
        available(),
        "sgemm_avx512::gemm_strided called on a CPU without AVX-512"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lda >= k && ldc >= n && a.len() >= (m - 1) * lda + k && c.len() >= (m - 1) * ldc + n,
        "sgemm_avx512::gemm_strided: slice sizes"
    );
    // SAFETY: AVX-512 checked; rows i < m of A (k values at i·lda) and C (n values at i·ldc) are
    // inside the slices by the assertion above.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        block(a.as_ptr(), lda, m, b, None, c.as_mut_ptr(), ldc);
    }
}

/// `rows` rows of C (row stride ldc) from the same rows of A (row stride lda), all of N and K.
/// Safety: A and C must hold those rows; the CPU must have AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block(
    a: *const f32,
    lda: usize,
    rows: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    let micro_panels = rows.div_ceil(MR);
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        let init_kind = if pc > 0 {
            Init::Load
        } else if bias.is_some() {
            Init::Bias
        } else {
            Init::Zero
        };
        for (jp, panel) in b.data.chunks(k * NR).enumerate() {
            let c0 = jp * NR;
            let cols = NR.min(n - c0);
            let b_ptr = panel[pc * NR..].as_ptr();
            let bias_ptr = bias.map_or(std::ptr::null(), |bv| bv[c0..].as_ptr());
            for ip in 0..micro_panels {
                let r0 = ip * MR;
                let r = MR.min(rows - r0);
                // SAFETY: tile rows r0..r0+r and columns c0..c0+cols are inside C, and the rows'
                // kc values from column pc inside A (the caller's contract).
                unsafe {
                    kernel(
                        kc,
                        a.add(r0 * lda + pc),
                        lda,
                        b_ptr,
                        c.add(r0 * ldc + c0),
                        ldc,
                        r,
                        cols,
                        init_kind,
                        bias_ptr,
                    );
                }
            }
        }
        pc += kc;
    }
}

#[derive(Clone, Copy)]
enum Init {
    Zero,
    Bias,
    Load,
}

/// The 12×32 register tile: c[r, 0..cols] (=|+=) Σ_kk a[kk][r]·b[kk][0..32] for r < rows.
/// Loops run over the constant MR with `r < rows` tests so the accumulators stay in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    init: Init,
    bias: *const f32,
) {
    use std::arch::x86_64::*;
    let m0: __mmask16 = if cols >= 16 {
        0xFFFF
    } else {
        ((1u32 << cols) - 1) as u16
    };
    let m1: __mmask16 = if cols >= 32 {
        0xFFFF
    } else if cols <= 16 {
        0
    } else {
        ((1u32 << (cols - 16)) - 1) as u16
    };
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    // SAFETY (whole body): the caller passes pointers to kc×MR packed A, kc×NR packed B, a
    // rows×cols tile of C with row stride ldc, and (for Init::Bias) cols bias values.
    unsafe {
        match init {
            Init::Zero => {}
            Init::Bias => {
                let b0 = _mm512_maskz_loadu_ps(m0, bias);
                let b1 = _mm512_maskz_loadu_ps(m1, bias.add(16));
                for r in 0..MR {
                    acc[2 * r] = b0;
                    acc[2 * r + 1] = b1;
                }
            }
            Init::Load => {
                for r in 0..MR {
                    if r < rows {
                        acc[2 * r] = _mm512_maskz_loadu_ps(m0, c.add(r * ldc));
                        acc[2 * r + 1] = _mm512_maskz_loadu_ps(m1, c.add(r * ldc + 16));
                    }
                }
            }
        }
        for kk in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(kk * NR));
            let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
            for r in 0..MR {
                // Rows past `rows` reread the last row (in bounds); their sums are not stored.
                let av = _mm512_set1_ps(*a.add(r.min(rows - 1) * lda + kk));
                acc[2 * r] = _mm512_fmadd_ps(av, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm512_fmadd_ps(av, b1, acc[2 * r + 1]);
            }
        }
        for r in 0..MR {
            if r < rows {
                _mm512_mask_storeu_ps(c.add(r * ldc), m0, acc[2 * r]);
                _mm512_mask_storeu_ps(c.add(r * ldc + 16), m1, acc[2 * r + 1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd shapes (partial row tiles, partial column panels, two K blocks), with and without
    /// bias and an epilogue, against a float64 reference.
    #[test]
    fn matches_a_float64_reference() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: kernel not exercised");
            return;
        }
        let mut rng = crate::rng::Rng::new(7);
        for &(m, k, n) in &[(1, 1, 1), (37, 300, 70), (205, 512, 96), (13, 257, 33)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let bm: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let packed = PackedB::new(&bm, k, n);
            for with_bias in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                let bias_opt = with_bias.then_some(bias.as_slice());
                gemm(&a, m, &packed, bias_opt, &mut c, |s| {
                    s.iter_mut().for_each(|v| *v *= 2.0)
                });
                for i in 0..m {
                    for j in 0..n {
                        let mut want: f64 = if with_bias { bias[j] as f64 } else { 0.0 };
                        for kk in 0..k {
                            want += a[i * k + kk] as f64 * bm[kk * n + j] as f64;
                        }
                        let got = c[i * n + j] as f64 / 2.0;
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()) * (k as f64).sqrt(),
                            "({m},{k},{n}) c[{i},{j}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }

    /// Strided views and a transposed repack (attention's Q·Kᵀ from packed qkv rows).
    #[test]
    fn strided_and_transposed_match_the_reference() {
        if !available() {
            return;
        }
        let mut rng = crate::rng::Rng::new(3);
        let (m, k, n, ld) = (29, 64, 45, 150);
        let a: Vec<f32> = (0..m * ld).map(|_| rng.normal()).collect();
        let bt: Vec<f32> = (0..n * ld).map(|_| rng.normal()).collect(); // B[kk][j] = bt[j·ld + kk]
        let mut packed = PackedB::empty();
        packed.repack(&bt, ld, k, n, true);
        let ldc = 50;
        let mut c = vec![7f32; m * ldc];
        gemm_strided(&a, ld, m, &packed, &mut c, ldc);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j] as f64;
                if j >= n {
                    assert_eq!(got, 7.0, "column {j} outside C was written");
                    continue;
                }
                let want: f64 = (0..k)
                    .map(|kk| a[i * ld + kk] as f64 * bt[j * ld + kk] as f64)
                    .sum();
                assert!((got - want).abs() < 1e-3, "c[{i},{j}] = {got}, want {want}");
            }
        }
    }
}
