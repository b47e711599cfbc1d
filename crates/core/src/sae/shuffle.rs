//! Training batches: random rows from all of a store's shards, one shard at a time through a
//! bounded shuffle buffer (memory stays bounded whatever the store's size), optionally only some
//! images' rows and extra copies of the CLS row.

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::store::activations::ActivationStore;
use std::collections::HashSet;

/// Random batches from all shards, reading one shard at a time into a bounded shuffle buffer.
pub(super) struct ShuffleStream<'a> {
    store: &'a ActivationStore,
    rng: Rng,
    order: Vec<usize>,
    next_shard: usize,
    buffer: Vec<f32>,
    d: usize,
    cap_rows: usize,
    /// (position of the CLS row among an image's rows, extra copies of it per image).
    cls_extra: Option<(usize, usize)>,
    /// Only these images' rows are drawn.
    subset: Option<&'a HashSet<u32>>,
    /// Rows added since the current pass over the shards began (a pass adding none means the
    /// subset holds no stored image, which would otherwise loop forever).
    rows_this_pass: usize,
}

impl<'a> ShuffleStream<'a> {
    pub(super) fn new(
        store: &'a ActivationStore,
        seed: u64,
        cap_rows: usize,
        cls_extra: Option<(usize, usize)>,
        subset: Option<&'a HashSet<u32>>,
    ) -> Self {
        ShuffleStream {
            store,
            rng: Rng::new(seed ^ 0x5eed),
            order: Vec::new(),
            next_shard: 0,
            buffer: Vec::new(),
            d: store.manifest.d_model,
            cap_rows,
            cls_extra,
            subset,
            rows_this_pass: 0,
        }
    }

    pub(super) fn refill(&mut self) -> Result<()> {
        let per_image = self.store.manifest.tokens_per_image().max(1);
        while self.buffer.len() / self.d < self.cap_rows {
            if self.next_shard >= self.order.len() {
                // New pass: shuffle the shard order.
                self.order = (0..self.store.manifest.shards.len()).collect();
                for i in (1..self.order.len()).rev() {
                    let j = self.rng.below(i + 1);
                    self.order.swap(i, j);
                }
                self.next_shard = 0;
                self.rows_this_pass = 0;
            }
            let Some(&next) = self.order.get(self.next_shard) else {
                return Err(Error::Workspace("the activation store is empty".into()));
            };
            let shard = self.store.read_shard(next)?;
            self.next_shard += 1;
            // `image_ids` has one entry per stored image; its rows are `per_image` consecutive rows.
            let rows: Vec<&[f32]> = shard
                .activations
                .chunks(per_image * self.d)
                .zip(&shard.image_ids)
                .filter(|(_, id)| self.subset.is_none_or(|s| s.contains(id)))
                .map(|(rows, _)| rows)
                .collect();
            for image in rows {
                self.buffer.extend_from_slice(image);
                self.rows_this_pass += image.len() / self.d;
                if let Some((pos, extra)) = self.cls_extra {
                    let cls = &image[pos * self.d..(pos + 1) * self.d];
                    for _ in 0..extra {
                        self.buffer.extend_from_slice(cls);
                    }
                }
            }
            if self.next_shard == self.order.len() && self.rows_this_pass == 0 {
                return Err(Error::Workspace(
                    "none of the images chosen for training is in the activation store \
                     (all were skipped at extraction)"
                        .into(),
                ));
            }
            if self.store.manifest.shards.len() == 1 || self.buffer.len() / self.d >= self.cap_rows
            {
                break;
            }
        }
        Ok(())
    }

    /// Removes `n` random rows from the buffer (swap-remove), refilling it as needed.
    pub(super) fn batch(&mut self, n: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        let d = self.d;
        for _ in 0..n {
            if self.buffer.len() < d * n.max(self.cap_rows / 2).min(self.cap_rows) {
                self.refill()?;
            }
            let rows = self.buffer.len() / d;
            if rows == 0 {
                return Err(Error::Workspace("the activation store is empty".into()));
            }
            let r = self.rng.below(rows);
            out.extend_from_slice(&self.buffer[r * d..(r + 1) * d]);
            let last = rows - 1;
            if r != last {
                let (head, tail) = self.buffer.split_at_mut(last * d);
                head[r * d..(r + 1) * d].copy_from_slice(&tail[..d]);
            }
            self.buffer.truncate(last * d);
        }
        Ok(())
    }
}
