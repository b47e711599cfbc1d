//! f32 GEMM for the CPU fast path: C = A·B (+ bias), then an elementwise epilogue (the MLP's
//! activation) on each finished block of rows while it is still in cache. Two register kernels,
//! picked at run time: AVX-512 (a 12×32 tile, 24 zmm accumulators) and AVX2 + FMA (a 6×16 tile,
//! 12 ymm accumulators, BLIS's Haswell shape). CPUs with neither use the `gemm` crate.
//!
//! Why not only the `gemm` crate: at the backbone's shapes (M = batch·tokens, K and N = 384…1536)
//! its AVX-512 kernels reach ~128 GFLOP/s on two cores of this project's Xeon where MKL (PyTorch's
//! BLAS) reaches 170–215, and it repacks the weights on every call. Here B (a weight matrix) is
//! packed once at load time into panels as wide as the kernel's tile; A is read in place (one
//! broadcast load per row and step; packing it cost more than it saved at these depths). BLIS's
//! loop order: K blocks, then B panels, then row tiles, with row blocks of C spread over threads.

use rayon::prelude::*;
use std::sync::OnceLock;

/// Depth of one block: a B micro-panel is KC×NR floats, the A rows of a task MC×KC.
const KC: usize = 256;
/// Rows per parallel task (its A block, 192×256 floats, stays in L2 across B panels); a
/// multiple of both kernels' tile heights.
const MC: usize = 192;

/// The register kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// 12×32 tile in zmm registers.
    Avx512,
    /// 6×16 tile in ymm registers, with FMA.
    Avx2,
}

/// The AVX-512 register tile: rows × columns (two zmm vectors wide).
const AVX512_MR: usize = 12;
const AVX512_NR: usize = 32;
/// The AVX2 register tile: rows × columns (two ymm vectors wide).
const AVX2_MR: usize = 6;
const AVX2_NR: usize = 16;

impl Isa {
    /// Rows of the register tile.
    fn mr(self) -> usize {
        match self {
            Isa::Avx512 => AVX512_MR,
            Isa::Avx2 => AVX2_MR,
        }
    }

    /// Columns of the register tile, and so the width of B's packed panels.
    fn nr(self) -> usize {
        match self {
            Isa::Avx512 => AVX512_NR,
            Isa::Avx2 => AVX2_NR,
        }
    }

    /// Every kernel this CPU can run, fastest first (tests exercise each).
    pub fn supported() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                out.push(Isa::Avx512);
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                out.push(Isa::Avx2);
            }
        }
        out
    }
}

/// The fastest kernel this CPU runs, if any (detected once).
pub fn best() -> Option<Isa> {
    static BEST: OnceLock<Option<Isa>> = OnceLock::new();
    *BEST.get_or_init(|| Isa::supported().first().copied())
}

/// True when this CPU runs one of the kernels (otherwise callers use the `gemm` crate).
pub fn available() -> bool {
    best().is_some()
}

/// A row-major [k, n] matrix packed as ⌈n/NR⌉ panels of [k][NR] (zero-padded columns), for one
/// kernel.
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
    isa: Isa,
}

impl PackedB {
    /// Packs B for this CPU's fastest kernel. Panics if there is none (check [`available`]).
    #[allow(clippy::expect_used)] // callers check `available()` first; others use the gemm crate
    pub fn new(b: &[f32], k: usize, n: usize) -> Self {
        Self::new_for(best().expect("sgemm: no kernel for this CPU"), b, k, n)
    }

    /// Packs B for a given kernel (tests run each one the CPU supports).
    pub fn new_for(isa: Isa, b: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(b.len(), k * n, "PackedB::new: b is not k×n");
        let mut packed = Self::empty_for(isa);
        packed.repack(b, n, k, n, false);
        packed
    }

    /// An empty matrix to [`Self::repack`] into (attention packs K and V per head).
    #[allow(clippy::expect_used)] // as in `new`
    pub fn empty() -> Self {
        Self::empty_for(best().expect("sgemm: no kernel for this CPU"))
    }

    fn empty_for(isa: Isa) -> Self {
        PackedB {
            data: Vec::new(),
            k: 0,
            n: 0,
            isa,
        }
    }

    /// Packs the k×n matrix B[kk][j] = src[kk·ld + j], or with `transposed` src[j·ld + kk],
    /// reusing this matrix's allocation.
    pub fn repack(&mut self, src: &[f32], ld: usize, k: usize, n: usize, transposed: bool) {
        let nr = self.isa.nr();
        let panels = n.div_ceil(nr);
        self.data.clear();
        self.data.resize(panels * k * nr, 0.0);
        self.k = k;
        self.n = n;
        for (p, panel) in self.data.chunks_mut(k * nr).enumerate() {
            let c0 = p * nr;
            let cols = nr.min(n - c0);
            if transposed {
                for j in 0..cols {
                    let col = &src[(c0 + j) * ld..(c0 + j) * ld + k];
                    for (dst, &v) in panel.chunks_exact_mut(nr).zip(col) {
                        dst[j] = v;
                    }
                }
            } else {
                for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
                    dst[..cols].copy_from_slice(&src[kk * ld + c0..kk * ld + c0 + cols]);
                }
            }
        }
    }
}

/// c[m×n] = a[m×k]·B (+ bias), then `epilogue` on each finished block of whole rows of C, with
/// row blocks spread over rayon's threads. Row-major, contiguous A and C.
/// Panics if the slices do not match the shapes.
pub fn gemm<F>(a: &[f32], m: usize, b: &PackedB, bias: Option<&[f32]>, c: &mut [f32], epilogue: F)
where
    F: Fn(&mut [f32]) + Sync + Send,
{
    let (k, n) = (b.k, b.n);
    assert!(
        a.len() >= m * k && c.len() >= m * n,
        "sgemm::gemm: slice sizes"
    );
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "sgemm::gemm: bias length");
    }
    if m == 0 || n == 0 {
        return;
    }
    c[..m * n]
        .par_chunks_mut(MC * n)
        .zip(a[..m * k].par_chunks(MC * k))
        .for_each(|(c_rows, a_rows)| {
            let rows = c_rows.len() / n;
            // SAFETY: a_rows holds rows×k and c_rows rows×n; B was packed for a kernel this CPU
            // supports (PackedB is only built for detected ones).
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
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lda >= k && ldc >= n && a.len() >= (m - 1) * lda + k && c.len() >= (m - 1) * ldc + n,
        "sgemm::gemm_strided: slice sizes"
    );
    // SAFETY: rows i < m of A (k values at i·lda) and C (n values at i·ldc) are inside the
    // slices by the assertion above; B was packed for a supported kernel.
    unsafe {
        block(a.as_ptr(), lda, m, b, None, c.as_mut_ptr(), ldc);
    }
}

/// `rows` rows of C (row stride ldc) from the same rows of A (row stride lda), all of N and K.
/// Safety: A and C must hold those rows; the CPU must support `b.isa`.
unsafe fn block(
    a: *const f32,
    lda: usize,
    rows: usize,
    b: &PackedB,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    let (k, n, isa) = (b.k, b.n, b.isa);
    let (mr, nr) = (isa.mr(), isa.nr());
    let micro_panels = rows.div_ceil(mr);
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        let init = if pc > 0 {
            Init::Load
        } else if bias.is_some() {
            Init::Bias
        } else {
            Init::Zero
        };
        for (jp, panel) in b.data.chunks(k * nr).enumerate() {
            let c0 = jp * nr;
            let tile = Tile {
                kc,
                b: panel[pc * nr..].as_ptr(),
                cols: nr.min(n - c0),
                init,
                bias: bias.map_or(std::ptr::null(), |bv| bv[c0..].as_ptr()),
                lda,
                ldc,
            };
            for ip in 0..micro_panels {
                let r0 = ip * mr;
                let r = mr.min(rows - r0);
                // SAFETY: tile rows r0..r0+r and columns c0..c0+cols are inside C, and the rows'
                // kc values from column pc inside A (the caller's contract); the CPU supports
                // the kernel B was packed for.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let (a_tile, c_tile) = (a.add(r0 * lda + pc), c.add(r0 * ldc + c0));
                    match isa {
                        Isa::Avx512 => kernel_avx512(&tile, a_tile, c_tile, r),
                        Isa::Avx2 => kernel_avx2(&tile, a_tile, c_tile, r),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (r0, r, &tile);
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

/// What a register tile needs besides its A rows, C tile and row count.
struct Tile {
    /// Depth of this K block.
    kc: usize,
    /// The B micro-panel at this K block: kc×NR floats.
    b: *const f32,
    /// Columns of C this tile covers (≤ NR).
    cols: usize,
    init: Init,
    /// `cols` bias values (Init::Bias only).
    bias: *const f32,
    lda: usize,
    ldc: usize,
}

/// The 12×32 AVX-512 tile: c[r, 0..cols] (=|+=) Σ_kk a[r][kk]·b[kk][0..32] for r < rows.
/// Loops run over the constant tile height with `r < rows` tests so the accumulators stay in
/// registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(t: &Tile, a: *const f32, c: *mut f32, rows: usize) {
    use std::arch::x86_64::*;
    const MR: usize = AVX512_MR;
    let (kc, b, cols, lda, ldc, bias) = (t.kc, t.b, t.cols, t.lda, t.ldc, t.bias);
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
    // SAFETY (whole body): the caller passes rows rows of kc A values (stride lda), a kc×32
    // packed B micro-panel, a rows×cols tile of C with row stride ldc, and (for Init::Bias) cols
    // bias values.
    unsafe {
        match t.init {
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
            let b0 = _mm512_loadu_ps(b.add(kk * AVX512_NR));
            let b1 = _mm512_loadu_ps(b.add(kk * AVX512_NR + 16));
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

/// The 6×16 AVX2 + FMA tile (12 ymm accumulators, two B vectors and one broadcast: 15 of the 16
/// registers): c[r, 0..cols] (=|+=) Σ_kk a[r][kk]·b[kk][0..16] for r < rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(t: &Tile, a: *const f32, c: *mut f32, rows: usize) {
    use std::arch::x86_64::*;
    const MR: usize = AVX2_MR;
    let (kc, b, cols, lda, ldc, bias) = (t.kc, t.b, t.cols, t.lda, t.ldc, t.bias);
    // Lane masks for the two 8-column halves (all ones = store the lane).
    let lanes =
        |from: usize| -> [i32; 8] { std::array::from_fn(|j| if from + j < cols { -1 } else { 0 }) };
    let (l0, l1) = (lanes(0), lanes(8));
    let full = cols >= 16;
    // Each row's A pointer once (rows past `rows` reread the last row; their sums are not
    // stored).
    let rows_a: [*const f32; MR] = std::array::from_fn(|r| a.wrapping_add(r.min(rows - 1) * lda));
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    // SAFETY (whole body): as for the AVX-512 tile, with a kc×16 B micro-panel.
    unsafe {
        let m0 = _mm256_loadu_si256(l0.as_ptr().cast());
        let m1 = _mm256_loadu_si256(l1.as_ptr().cast());
        match t.init {
            Init::Zero => {}
            Init::Bias => {
                let b0 = _mm256_maskload_ps(bias, m0);
                let b1 = _mm256_maskload_ps(bias.add(8), m1);
                for r in 0..MR {
                    acc[2 * r] = b0;
                    acc[2 * r + 1] = b1;
                }
            }
            Init::Load => {
                for r in 0..MR {
                    if r < rows {
                        acc[2 * r] = _mm256_maskload_ps(c.add(r * ldc), m0);
                        acc[2 * r + 1] = _mm256_maskload_ps(c.add(r * ldc + 8), m1);
                    }
                }
            }
        }
        for kk in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(kk * AVX2_NR));
            let b1 = _mm256_loadu_ps(b.add(kk * AVX2_NR + 8));
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*rows_a[r].add(kk));
                acc[2 * r] = _mm256_fmadd_ps(av, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(av, b1, acc[2 * r + 1]);
            }
        }
        for r in 0..MR {
            if r < rows {
                if full {
                    _mm256_storeu_ps(c.add(r * ldc), acc[2 * r]);
                    _mm256_storeu_ps(c.add(r * ldc + 8), acc[2 * r + 1]);
                } else {
                    _mm256_maskstore_ps(c.add(r * ldc), m0, acc[2 * r]);
                    _mm256_maskstore_ps(c.add(r * ldc + 8), m1, acc[2 * r + 1]);
                }
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
        if Isa::supported().is_empty() {
            eprintln!("neither AVX-512 nor AVX2 on this CPU: no kernel exercised");
        }
        let mut rng = crate::rng::Rng::new(7);
        for &(m, k, n) in &[(1, 1, 1), (37, 300, 70), (205, 512, 96), (13, 257, 33)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let bm: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            for (isa, with_bias) in Isa::supported()
                .into_iter()
                .flat_map(|isa| [(isa, false), (isa, true)])
            {
                let packed = PackedB::new_for(isa, &bm, k, n);
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
                            "{isa:?} ({m},{k},{n}) c[{i},{j}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }

    /// Strided views and a transposed repack (attention's Q·Kᵀ from packed qkv rows).
    #[test]
    fn strided_and_transposed_match_the_reference() {
        for isa in Isa::supported() {
            strided_case(isa);
        }
    }

    fn strided_case(isa: Isa) {
        let mut rng = crate::rng::Rng::new(3);
        let (m, k, n, ld) = (29, 64, 45, 150);
        let a: Vec<f32> = (0..m * ld).map(|_| rng.normal()).collect();
        let bt: Vec<f32> = (0..n * ld).map(|_| rng.normal()).collect(); // B[kk][j] = bt[j·ld + kk]
        let mut packed = PackedB::empty_for(isa);
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
                assert!(
                    (got - want).abs() < 1e-3,
                    "{isa:?} c[{i},{j}] = {got}, want {want}"
                );
            }
        }
    }
}
