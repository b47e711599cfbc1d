//! The index's on-disk state: one safetensors file of typed arrays, written atomically and
//! validated when read.

use super::*;

pub(crate) enum Tensor {
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
}

pub(crate) fn serialize(tensors: Vec<(&str, Tensor)>) -> Result<Vec<u8>> {
    let bytes: Vec<(&str, Dtype, usize, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, t)| match t {
            Tensor::U32(v) => (n, Dtype::U32, v.len(), crate::pod::to_le_bytes(&v)),
            Tensor::U64(v) => (n, Dtype::U64, v.len(), crate::pod::to_le_bytes(&v)),
            Tensor::F32(v) => (n, Dtype::F32, v.len(), crate::pod::to_le_bytes(&v)),
        })
        .collect();
    let bad = |e: safetensors::SafeTensorError| Error::Invalid(format!("cannot encode index: {e}"));
    let mut views = Vec::new();
    for (n, dt, len, b) in &bytes {
        views.push((
            n.to_string(),
            TensorView::new(*dt, vec![*len], b).map_err(bad)?,
        ));
    }
    safetensors::serialize(views, None).map_err(bad)
}

pub(super) fn corrupt(p: &Path, e: impl std::fmt::Display) -> Error {
    crate::fixable!(
        [p, format!(": corrupt index file ({e})")],
        [
            "run ",
            crate::fix::Command::Index { rebuild: true },
            " to rebuild the index"
        ]
    )
}

pub(super) fn raw<'a>(st: &'a safetensors::SafeTensors, name: &str, p: &Path) -> Result<&'a [u8]> {
    Ok(st.tensor(name).map_err(|e| corrupt(p, e))?.data())
}
pub(super) fn u32s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<u32>> {
    crate::pod::from_le_bytes(raw(st, name, p)?)
        .ok_or_else(|| corrupt(p, format!("`{name}` is not a whole number of u32 values")))
}
pub(super) fn u64s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<u64>> {
    crate::pod::from_le_bytes(raw(st, name, p)?)
        .ok_or_else(|| corrupt(p, format!("`{name}` is not a whole number of u64 values")))
}
pub(super) fn f32s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<f32>> {
    crate::pod::from_le_bytes(raw(st, name, p)?)
        .ok_or_else(|| corrupt(p, format!("`{name}` is not a whole number of f32 values")))
}
pub(super) fn f64s(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<Vec<f64>> {
    crate::pod::from_le_bytes(raw(st, name, p)?)
        .ok_or_else(|| corrupt(p, format!("`{name}` is not a whole number of f64 values")))
}

/// Exact sums `NAME_exact`, or the f64 `NAME` of an index written before sums were exact.
fn exact_sums(st: &safetensors::SafeTensors, name: &str, p: &Path) -> Result<ExactSums> {
    let exact = format!("{name}_exact");
    if st.tensor(&exact).is_ok() {
        ExactSums::from_words(&u64s(st, &exact, p)?)
            .ok_or_else(|| corrupt(p, format!("`{exact}` is not a whole number of sums")))
    } else {
        Ok(ExactSums::from_f64(&f64s(st, name, p)?))
    }
}

pub(super) fn write_state(path: &Path, ix: &FeatureIndex) -> Result<()> {
    let (d_sae, n, t) = (ix.d_sae, ix.top_n, ix.tokens_per_image);
    // Top lists as fixed [d_sae, top_n] tables; `top_len` says how many entries are real.
    let mut img = vec![0u32; d_sae * n];
    let mut tok = vec![0u32; d_sae * n];
    let mut val = vec![0f32; d_sae * n];
    let mut pat = vec![0f32; d_sae * n * t];
    let mut len = vec![0u32; d_sae];
    for (j, list) in ix.top.iter().enumerate() {
        len[j] = list.len() as u32;
        for (r, e) in list.iter().enumerate() {
            img[j * n + r] = e.image;
            tok[j * n + r] = e.token;
            val[j * n + r] = e.value;
            pat[(j * n + r) * t..(j * n + r + 1) * t].copy_from_slice(&e.tokens);
        }
    }
    let mut s_len = vec![0u32; d_sae];
    let mut s_img = vec![0u32; d_sae * SAMPLES];
    let mut s_tok = vec![0u32; d_sae * SAMPLES];
    let mut s_val = vec![0f32; d_sae * SAMPLES];
    for (j, sample) in ix.samples.iter().enumerate() {
        s_len[j] = sample.len() as u32;
        for (r, e) in sample.iter().enumerate() {
            s_img[j * SAMPLES + r] = e.image;
            s_tok[j * SAMPLES + r] = e.token;
            s_val[j * SAMPLES + r] = e.value;
        }
    }
    let shape = vec![
        d_sae as u64,
        n as u64,
        t as u64,
        ix.n_classes as u64,
        ix.n_images,
        ix.n_tokens,
        ix.d_in as u64,
    ];
    let bytes = serialize(vec![
        ("shape", Tensor::U64(shape)),
        ("token_count", Tensor::U64(ix.token_count.clone())),
        ("image_count", Tensor::U64(ix.image_count.clone())),
        ("act_sum_exact", Tensor::U64(ix.act_sum.to_words())),
        ("max_act", Tensor::F32(ix.max_act.clone())),
        ("hist", Tensor::U64(ix.hist.clone())),
        ("class_images", Tensor::U64(ix.class_images.clone())),
        ("class_act_exact", Tensor::U64(ix.class_act.to_words())),
        ("class_sizes", Tensor::U64(ix.class_sizes.clone())),
        ("class_raw_exact", Tensor::U64(ix.class_raw.to_words())),
        ("top_len", Tensor::U32(len)),
        ("top_image", Tensor::U32(img)),
        ("top_token", Tensor::U32(tok)),
        ("top_value", Tensor::F32(val)),
        ("top_tokens", Tensor::F32(pat)),
        ("sample_len", Tensor::U32(s_len)),
        ("sample_image", Tensor::U32(s_img)),
        ("sample_token", Tensor::U32(s_tok)),
        ("sample_value", Tensor::F32(s_val)),
    ])?;
    fsutil::write_atomic(path, &bytes)
}

/// Only the top images per feature (dataset ids, strongest first), checked against the header.
pub(super) fn read_top_images(path: &Path) -> Result<Vec<Vec<u32>>> {
    let bytes = std::fs::read(path).at(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    let shape = u64s(&st, "shape", path)?;
    let (Some(&d_sae), Some(&n)) = (shape.first(), shape.get(1)) else {
        return Err(corrupt(path, "bad shape header"));
    };
    let (d_sae, n) = (d_sae as usize, n as usize);
    let len = u32s(&st, "top_len", path)?;
    let img = u32s(&st, "top_image", path)?;
    if len.len() != d_sae
        || img.len() != d_sae.saturating_mul(n)
        || len.iter().any(|&l| l as usize > n)
    {
        return Err(corrupt(path, "table sizes disagree with the header"));
    }
    Ok((0..d_sae)
        .map(|j| img[j * n..j * n + len[j] as usize].to_vec())
        .collect())
}

pub(super) fn read_state(path: &Path) -> Result<FeatureIndex> {
    let bytes = std::fs::read(path).at(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    let shape = u64s(&st, "shape", path)?;
    if shape.len() != 7 {
        return Err(corrupt(path, "bad shape header"));
    }
    let [d_sae, n, t, c, n_images, n_tokens, d_in] = [0, 1, 2, 3, 4, 5, 6].map(|i| shape[i]);
    let (d_sae, n, t, c, d_in) = (
        d_sae as usize,
        n as usize,
        t as usize,
        c as usize,
        d_in as usize,
    );
    let mut ix = FeatureIndex::new(d_sae, d_in, n, t, c);
    ix.n_images = n_images;
    ix.n_tokens = n_tokens;
    ix.token_count = u64s(&st, "token_count", path)?;
    ix.image_count = u64s(&st, "image_count", path)?;
    ix.act_sum = exact_sums(&st, "act_sum", path)?;
    ix.max_act = f32s(&st, "max_act", path)?;
    ix.hist = u64s(&st, "hist", path)?;
    ix.class_images = u64s(&st, "class_images", path)?;
    ix.class_act = exact_sums(&st, "class_act", path)?;
    ix.class_sizes = u64s(&st, "class_sizes", path)?;
    ix.class_raw = exact_sums(&st, "class_raw", path)?;
    let len = u32s(&st, "top_len", path)?;
    let img = u32s(&st, "top_image", path)?;
    let tok = u32s(&st, "top_token", path)?;
    let val = f32s(&st, "top_value", path)?;
    let pat = f32s(&st, "top_tokens", path)?;
    if len.len() != d_sae
        || len.iter().any(|&l| l as usize > n)
        || img.len() != d_sae * n
        || tok.len() != d_sae * n
        || val.len() != d_sae * n
        || pat.len() != d_sae * n * t
        || ix.hist.len() != d_sae * HIST_BINS
        || ix.token_count.len() != d_sae
        || ix.image_count.len() != d_sae
        || ix.act_sum.len() != d_sae
        || ix.max_act.len() != d_sae
        || ix.class_images.len() != d_sae * c
        || ix.class_act.len() != d_sae * c
        || ix.class_sizes.len() != c
        || ix.class_raw.len() != c * d_in
    {
        return Err(corrupt(path, "table sizes disagree with the header"));
    }
    for j in 0..d_sae {
        ix.top[j] = (0..len[j] as usize)
            .map(|r| TopEntry {
                image: img[j * n + r],
                token: tok[j * n + r],
                value: val[j * n + r],
                tokens: pat[(j * n + r) * t..(j * n + r + 1) * t].to_vec(),
            })
            .collect();
    }
    // Indexes written before samples were kept have none (the feature page says to rebuild).
    ix.has_samples = st.tensor("sample_len").is_ok();
    if ix.has_samples {
        let len = u32s(&st, "sample_len", path)?;
        let img = u32s(&st, "sample_image", path)?;
        let tok = u32s(&st, "sample_token", path)?;
        let val = f32s(&st, "sample_value", path)?;
        let k = SAMPLES;
        if len.len() != d_sae
            || img.len() != d_sae * k
            || tok.len() != d_sae * k
            || val.len() != d_sae * k
            || len.iter().any(|&l| l as usize > k)
        {
            return Err(corrupt(path, "sample table sizes disagree with the header"));
        }
        for (j, (sample, &n)) in ix.samples.iter_mut().zip(&len).enumerate() {
            *sample = (j * k..j * k + n as usize)
                .map(|i| SampleEntry {
                    image: img[i],
                    token: tok[i],
                    value: val[i],
                })
                .collect();
        }
    }
    Ok(ix)
}
