//! Which latents fire: the k largest per row (TopK), the rows·k largest of a batch (BatchTopK,
//! Matryoshka), every positive one (ReLU), or every one above its threshold (JumpReLU).

use super::TrainArch;
use rayon::prelude::*;

/// The active latents of each row for pre-activations `pre` [rows, d_sae] (bias not yet added),
/// and for BatchTopK (and Matryoshka) the smallest kept value. `thresholds`: JumpReLU's θ.
pub fn select_active(
    arch: &TrainArch,
    pre: &[f32],
    b_enc: &[f32],
    thresholds: &[f32],
    k: usize,
) -> (Vec<Vec<(u32, f32)>>, Option<f32>) {
    let d_sae = b_enc.len();
    match arch {
        TrainArch::TopK => (
            pre.par_chunks(d_sae)
                .map(|row| top_k_biased(row, b_enc, k, None))
                .collect(),
            None,
        ),
        TrainArch::Relu { .. } => (
            pre.par_chunks(d_sae)
                .map(|row| above(row, b_enc, 0.0))
                .collect(),
            None,
        ),
        TrainArch::JumpRelu { .. } => (
            pre.par_chunks(d_sae)
                .map(|row| {
                    row.iter()
                        .zip(b_enc.iter().zip(thresholds))
                        .enumerate()
                        .filter_map(|(j, (&p, (&b, &t)))| {
                            let v = p + b;
                            (v > 0.0 && v > t).then_some((j as u32, v))
                        })
                        .collect()
                })
                .collect(),
            None,
        ),
        TrainArch::BatchTopK | TrainArch::Matryoshka { .. } => batch_top_k(pre, b_enc, k),
    }
}

/// The entries of `row + b_enc` that are positive and at least `floor`, in latent order.
fn above(row: &[f32], b_enc: &[f32], floor: f32) -> Vec<(u32, f32)> {
    row.iter()
        .zip(b_enc)
        .enumerate()
        .filter_map(|(j, (&p, &b))| {
            let v = p + b;
            (v > 0.0 && v >= floor).then_some((j as u32, v))
        })
        .collect()
}

/// The rows·k largest positive activations of a batch, every value equal to the cut kept, each
/// row's list in latent order; and the smallest kept value. Exact without sorting the batch:
/// the rows·k-th largest of each row's top 2k is a lower bound on the cut, and only a row whose
/// 2k candidates all reach that bound can hold more values above it, so only such rows are read
/// again in full.
fn batch_top_k(pre: &[f32], b_enc: &[f32], k: usize) -> (Vec<Vec<(u32, f32)>>, Option<f32>) {
    let d_sae = b_enc.len();
    let rows = pre.len() / d_sae;
    let budget = rows * k;
    let m = (2 * k).min(d_sae);
    let candidates: Vec<Vec<(u32, f32)>> = pre
        .par_chunks(d_sae)
        .map_init(
            || vec![0f32; d_sae],
            |biased, row| {
                biased
                    .iter_mut()
                    .zip(row.iter().zip(b_enc))
                    .for_each(|(o, (&p, &b))| *o = p + b);
                let mut c = top_k_row(biased, m);
                c.retain(|&(_, v)| v > 0.0);
                c
            },
        )
        .collect();
    let mut pool: Vec<f32> = candidates.iter().flatten().map(|&(_, v)| v).collect();
    let descending = |a: &f32, b: &f32| b.total_cmp(a);
    let lists: Vec<Vec<(u32, f32)>> = if budget == 0 || pool.len() < budget {
        // Fewer positive values than the budget (or none asked): keep every positive one.
        pre.par_chunks(d_sae)
            .map(|row| above(row, b_enc, 0.0))
            .collect()
    } else {
        let bound = *pool.select_nth_unstable_by(budget - 1, descending).1;
        let reach: Vec<Vec<(u32, f32)>> = pre
            .par_chunks(d_sae)
            .zip(&candidates)
            .map(|(row, c)| {
                if c.len() == m && c.iter().all(|&(_, v)| v >= bound) {
                    above(row, b_enc, bound)
                } else {
                    c.iter().filter(|&&(_, v)| v >= bound).copied().collect()
                }
            })
            .collect();
        // Every value ≥ bound is in `reach`, and at least `budget` of them.
        let mut values: Vec<f32> = reach.iter().flatten().map(|&(_, v)| v).collect();
        let floor = *values.select_nth_unstable_by(budget - 1, descending).1;
        reach
            .into_par_iter()
            .map(|mut l| {
                l.retain(|&(_, v)| v >= floor);
                l.sort_unstable_by_key(|&(j, _)| j);
                l
            })
            .collect()
    };
    let min_kept = lists
        .iter()
        .flat_map(|l| l.iter().map(|&(_, v)| v))
        .fold(f32::INFINITY, f32::min);
    (lists, min_kept.is_finite().then_some(min_kept))
}

/// The k largest entries of `row` (ReLU'd), ties to the lower index: `top_k_biased` without bias
/// or mask, for inference. Once the heap is full, a 16-wide block whose maximum cannot beat the
/// heap's minimum is skipped with one vectorised scan, which is most blocks.
pub(crate) fn top_k_row(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    let less = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    for (c, block) in row.chunks(16).enumerate() {
        if heap.len() == k {
            // Later indices lose ties, so a block whose best only equals the minimum cannot
            // enter. (`|` rather than `any`: no early exit, so it vectorises.)
            let floor = heap[0].0;
            if !block.iter().fold(false, |hit, &v| hit | (v > floor)) {
                continue;
            }
        }
        for (o, &v) in block.iter().enumerate() {
            let item = (v, (c * 16 + o) as u32);
            if heap.len() < k {
                heap.push(item);
                sift_up(&mut heap, less);
            } else if less(heap[0], item) {
                heap[0] = item;
                sift_down(&mut heap, less);
            }
        }
    }
    heap.into_iter().map(|(v, j)| (j, v.max(0.0))).collect()
}

fn sift_up(heap: &mut [(f32, u32)], less: impl Fn((f32, u32), (f32, u32)) -> bool) {
    let mut i = heap.len() - 1;
    while i > 0 && less(heap[i], heap[(i - 1) / 2]) {
        heap.swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

fn sift_down(heap: &mut [(f32, u32)], less: impl Fn((f32, u32), (f32, u32)) -> bool) {
    let k = heap.len();
    let mut i = 0;
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut m = i;
        if l < k && less(heap[l], heap[m]) {
            m = l;
        }
        if r < k && less(heap[r], heap[m]) {
            m = r;
        }
        if m == i {
            break;
        }
        heap.swap(i, m);
        i = m;
    }
}

/// The k largest entries of `row + bias` (among latents not excluded by `only`), as
/// (latent, ReLU'd value). One pass with a size-k min-heap: no allocation per candidate.
pub(crate) fn top_k_biased(
    row: &[f32],
    bias: &[f32],
    k: usize,
    only: Option<&[bool]>,
) -> Vec<(u32, f32)> {
    // heap[0] is the smallest kept value; ties keep the lower index (as the sorting rule does).
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    let less = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    for (j, (&p, &b)) in row.iter().zip(bias).enumerate() {
        if only.is_some_and(|m| !m[j]) {
            continue;
        }
        let item = (p + b, j as u32);
        if heap.len() < k {
            heap.push(item);
            sift_up(&mut heap, less);
        } else if k > 0 && less(heap[0], item) {
            heap[0] = item;
            sift_down(&mut heap, less);
        }
    }
    heap.into_iter().map(|(v, j)| (j, v.max(0.0))).collect()
}
