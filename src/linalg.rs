//! Row-major f32 products on the `gemm` crate for the SAE kernels. (The backbone fast path keeps
//! its own call sites: moved behind this function, its per-image attention GEMMs ran 2× slower,
//! measured with `saescope bench extract`.)

/// How the right-hand matrix is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RhsLayout {
    /// B is [k, n].
    RowMajor,
    /// B is given as [n, k] and used transposed.
    Transposed,
}

/// C[m×n] = A[m×k]·B (or C += A·B with `accumulate`). `parallel` lets gemm use candle's thread
/// count; callers that already run in parallel over batches pass false.
pub fn matmul(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs: RhsLayout,
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "matmul: buffers smaller than {m}×{k}·{k}×{n}"
    );
    if m == 0 || n == 0 {
        return;
    }
    let threads = candle_core::utils::get_num_threads();
    let par = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let (b_cs, b_rs) = match rhs {
        RhsLayout::RowMajor => (1, n as isize),
        RhsLayout::Transposed => (k as isize, 1),
    };
    // SAFETY: the assert above guarantees the buffers hold the row-major matrices the strides
    // describe; `c` is a unique borrow so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_and_accumulation_match_a_naive_product() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let naive: Vec<f32> = (0..m * n)
            .map(|i| (0..k).map(|p| a[(i / n) * k + p] * b[p * n + i % n]).sum())
            .collect();
        let mut c = vec![0f32; m * n];
        matmul(&mut c, &a, &b, (m, k, n), RhsLayout::RowMajor, false, true);
        assert_eq!(c, naive);
        let mut c2 = vec![1f32; m * n];
        matmul(
            &mut c2,
            &a,
            &bt,
            (m, k, n),
            RhsLayout::Transposed,
            true,
            false,
        );
        assert!(
            c2.iter()
                .zip(&naive)
                .all(|(x, y)| (x - 1.0 - y).abs() < 1e-5)
        );
    }
}
