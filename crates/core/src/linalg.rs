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

/// Largest absolute element-wise difference of two tensors of one shape (parity checks).
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> crate::Result<f32> {
    if a.dims() != b.dims() {
        return Err(crate::Error::Invalid(format!(
            "cannot compare shapes {:?} and {:?}",
            a.dims(),
            b.dims()
        )));
    }
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// gemm's threads: candle's thread count when `parallel` and there are several.
fn parallelism(parallel: bool) -> gemm::Parallelism {
    let threads = candle_core::utils::get_num_threads();
    if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
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
    let par = parallelism(parallel);
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

/// C[m×n] = Aᵀ·B for A stored [k×m] and B [k×n], both row-major (a weight gradient summed over
/// the rows of a batch: k = rows).
pub fn matmul_tn(c: &mut [f32], a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize)) {
    assert!(
        a.len() >= k * m && b.len() >= k * n && c.len() >= m * n,
        "matmul_tn: buffers smaller than ({k}×{m})ᵀ·{k}×{n}"
    );
    if m == 0 || n == 0 {
        return;
    }
    let par = parallelism(true);
    // SAFETY: the assert above guarantees the buffers hold the matrices the strides describe
    // (Aᵀ's element (i, p) is a[p·m + i]); `c` is a unique borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            m as isize,
            1,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Whitening for Mahalanobis distances: for a symmetric positive semi-definite `cov` [n×n]
/// (f64, row-major), returns W = L⁻¹ [n×n, lower triangular, f32] where L·Lᵀ = cov + ridge·I.
/// Then (x−μ)ᵀ(cov + ridge·I)⁻¹(x−μ) = ‖W(x−μ)‖². Fails (with the fix) if the matrix is not
/// positive definite even with the ridge.
pub fn whitening(cov: &[f64], n: usize, ridge: f64) -> crate::error::Result<Vec<f32>> {
    // Cholesky–Crout, row by row; inner products run over contiguous row prefixes.
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let dot: f64 = ri.iter().zip(rj).map(|(a, b)| a * b).sum();
            let a = cov[i * n + j] + if i == j { ridge } else { 0.0 };
            if i == j {
                let d = a - dot;
                if d <= 0.0 || !d.is_finite() {
                    return Err(crate::error::Error::Invalid(format!(
                        "covariance is not positive definite at dimension {i} (pivot {d:.3e}); \
                         fit on more images than dimensions, or raise the ridge"
                    )));
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a - dot) / l[j * n + j];
            }
        }
    }
    // W = L⁻¹ row by row: L·W = I gives W[i] = (e_i − Σ_{k<i} L[i][k]·W[k]) / L[i][i], where
    // W[k] is zero past column k — contiguous row updates.
    let mut w = vec![0f64; n * n];
    for i in 0..n {
        let (done, rest) = w.split_at_mut(i * n);
        let row = &mut rest[..n];
        row[i] = 1.0;
        for k in 0..i {
            let c = l[i * n + k];
            if c != 0.0 {
                row[..=k]
                    .iter_mut()
                    .zip(&done[k * n..k * n + k + 1])
                    .for_each(|(r, wk)| *r -= c * wk);
            }
        }
        let d = l[i * n + i];
        row[..=i].iter_mut().for_each(|v| *v /= d);
    }
    Ok(w.into_iter().map(|v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitening_inverts_the_covariance() {
        // cov = A·Aᵀ + I for a fixed A: W·cov·Wᵀ must be the identity.
        let n = 6;
        let a: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3)
            .collect();
        let mut cov = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                cov[i * n + j] = (0..n).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let w = whitening(&cov, n, 0.0).unwrap();
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n)
                    .flat_map(|p| (0..n).map(move |q| (p, q)))
                    .map(|(p, q)| w[i * n + p] as f64 * cov[p * n + q] * w[j * n + q] as f64)
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-4, "({i},{j}) = {v}");
            }
        }
        assert!(whitening(&[0.0; 4], 2, 0.0).is_err());
    }

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
