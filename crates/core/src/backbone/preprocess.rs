//! Image preprocessing that matches the reference image processors: Hugging Face's (PIL-based)
//! CLIP / BiT (DINOv2) / SigLIP processors and torchvision-style ViT transforms.
//!
//! Resizing reimplements Pillow's `Image.resize` for 8-bit RGB exactly (separable convolution,
//! support widened by the downscale factor for antialiasing, 22-bit fixed-point coefficients,
//! horizontal pass then vertical pass, rounding to u8 after each pass), because that is what the
//! models were trained and evaluated with.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    Nearest,
    Bilinear,
    Bicubic,
}

impl Resample {
    /// PIL's integer codes, as stored in `preprocessor_config.json` (`resample`).
    pub fn from_pil_code(code: i64) -> Result<Self> {
        Ok(match code {
            0 => Resample::Nearest,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            other => {
                return Err(Error::Model(format!(
                    "resample filter {other} is not supported (use 0 nearest, 2 bilinear or 3 bicubic)"
                )));
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Resample::Nearest => 0.5,
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Nearest => {
                if x < 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bilinear => (1.0 - x).max(0.0),
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    None,
    /// Scale so the shorter side has this length (aspect ratio kept; longer side truncated as HF does).
    ShortestEdge(u32),
    /// Scale to exactly height × width.
    Exact {
        height: u32,
        width: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub resize: Resize,
    pub resample: Resample,
    /// Center crop to height × width after resizing.
    pub crop: Option<(u32, u32)>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Maps coordinates in the model's input image back to the original image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputTransform {
    /// resized size / original size, per axis.
    pub scale_x: f32,
    pub scale_y: f32,
    /// Crop offset in resized pixels.
    pub crop_x: f32,
    pub crop_y: f32,
}

impl InputTransform {
    /// A box [x0, y0, x1, y1] in model-input pixels → the same box in original-image pixels.
    pub fn to_original(&self, b: [f32; 4]) -> [f32; 4] {
        [
            (b[0] + self.crop_x) / self.scale_x,
            (b[1] + self.crop_y) / self.scale_y,
            (b[2] + self.crop_x) / self.scale_x,
            (b[3] + self.crop_y) / self.scale_y,
        ]
    }
}

pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocessor {
    /// The size of the model input this produces for an image of the given size.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (w, h) = resized_size(self.resize, width, height);
        match self.crop {
            Some((ch, cw)) => (cw, ch),
            None => (w, h),
        }
    }

    /// The RGB8 image the model sees before normalisation (resized, then centre-cropped with
    /// zero padding), plus the transform back to original coordinates. Heatmaps are drawn on
    /// this so that patch boxes line up with the pixels the model was given.
    pub fn view(&self, img: &RgbImage) -> (RgbImage, InputTransform) {
        let (w0, h0) = img.dimensions();
        let (rw, rh) = resized_size(self.resize, w0, h0);
        let resized;
        let img = if (rw, rh) != (w0, h0) {
            resized = resize_rgb8(img, rw, rh, self.resample);
            &resized
        } else {
            img
        };
        let (crop_x, crop_y, out_w, out_h) = match self.crop {
            // HF center_crop: top = (h - crop_h) // 2, padding with zeros if the image is smaller.
            Some((ch, cw)) => (
                (rw as i64 - cw as i64).div_euclid(2),
                (rh as i64 - ch as i64).div_euclid(2),
                cw,
                ch,
            ),
            None => (0, 0, rw, rh),
        };
        let view = RgbImage::from_fn(out_w, out_h, |x, y| {
            let (sx, sy) = (x as i64 + crop_x, y as i64 + crop_y);
            if sx >= 0 && sy >= 0 && sx < rw as i64 && sy < rh as i64 {
                *img.get_pixel(sx as u32, sy as u32)
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        let transform = InputTransform {
            scale_x: rw as f32 / w0 as f32,
            scale_y: rh as f32 / h0 as f32,
            crop_x: crop_x as f32,
            crop_y: crop_y as f32,
        };
        (view, transform)
    }

    /// RGB image → normalised CHW floats plus the transform back to original coordinates.
    pub fn apply(&self, img: &RgbImage) -> (Vec<f32>, InputTransform) {
        let (view, transform) = self.view(img);
        let (out_w, out_h) = view.dimensions();
        let plane = (out_w * out_h) as usize;
        let mut out = vec![0f32; 3 * plane];
        let inv_std = self.std.map(|s| 1.0 / s);
        for (i, px) in view.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px.0[c] as f32 / 255.0 - self.mean[c]) * inv_std[c];
            }
        }
        (out, transform)
    }

    /// Preprocesses a batch of images of any sizes into one [B, 3, H, W] tensor.
    pub fn batch(
        &self,
        images: &[RgbImage],
        device: &Device,
    ) -> Result<(Tensor, Vec<InputTransform>)> {
        use rayon::prelude::*;
        let parts: Vec<(Vec<f32>, InputTransform)> =
            images.par_iter().map(|im| self.apply(im)).collect();
        let sizes: Vec<(u32, u32)> = images
            .iter()
            .map(|im| self.output_size(im.width(), im.height()))
            .collect();
        let (w, h) = sizes.first().copied().unwrap_or((0, 0));
        if sizes.iter().any(|s| *s != (w, h)) {
            return Err(Error::Invalid(
                "images in one batch produce different input sizes: this model's preprocessing has no crop or fixed resize; \
                 resize the images to one size first"
                    .into(),
            ));
        }
        let mut data = Vec::with_capacity(parts.len() * 3 * (w * h) as usize);
        let mut transforms = Vec::with_capacity(parts.len());
        for (p, t) in parts {
            data.extend_from_slice(&p);
            transforms.push(t);
        }
        let t = Tensor::from_vec(data, (images.len(), 3, h as usize, w as usize), device)?;
        Ok((t, transforms))
    }
}

fn resized_size(resize: Resize, w: u32, h: u32) -> (u32, u32) {
    match resize {
        Resize::None => (w, h),
        Resize::Exact { height, width } => (width, height),
        Resize::ShortestEdge(s) => {
            // transformers' get_resize_output_image_size(default_to_square=False)
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = (s as u64 * long as u64 / short.max(1) as u64) as u32;
            if w <= h { (s, new_long) } else { (new_long, s) }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's fixed-point filter coefficients for one axis: (first source index, weights) per output.
fn coefficients(in_size: u32, out_size: u32, filter: Resample) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
            let xmax = ((center + support + 0.5).trunc() as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().sum();
            let k = raw
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { 0.0 };
                    let f = w * (1u64 << PRECISION_BITS) as f64;
                    if f < 0.0 {
                        (f - 0.5) as i32
                    } else {
                        (f + 0.5) as i32
                    }
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB8 image exactly as Pillow's `Image.resize(size, resample)` does.
pub fn resize_rgb8(img: &RgbImage, out_w: u32, out_h: u32, filter: Resample) -> RgbImage {
    let (w, h) = img.dimensions();
    if filter == Resample::Nearest {
        return RgbImage::from_fn(out_w, out_h, |x, y| {
            let sx = (((x as f64 + 0.5) * w as f64 / out_w as f64) as u32).min(w - 1);
            let sy = (((y as f64 + 0.5) * h as f64 / out_h as f64) as u32).min(h - 1);
            *img.get_pixel(sx, sy)
        });
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass.
    let horizontal = if out_w != w {
        let coeffs = coefficients(w, out_w, filter);
        RgbImage::from_fn(out_w, h, |x, y| {
            let (x0, k) = &coeffs[x as usize];
            let mut acc = [half; 3];
            for (j, &kj) in k.iter().enumerate() {
                let p = img.get_pixel((x0 + j) as u32, y).0;
                for c in 0..3 {
                    acc[c] += p[c] as i64 * kj as i64;
                }
            }
            image::Rgb(acc.map(clip8))
        })
    } else {
        img.clone()
    };
    if out_h == h {
        return horizontal;
    }
    let coeffs = coefficients(h, out_h, filter);
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let (y0, k) = &coeffs[y as usize];
        let mut acc = [half; 3];
        for (j, &kj) in k.iter().enumerate() {
            let p = horizontal.get_pixel(x, (y0 + j) as u32).0;
            for c in 0..3 {
                acc[c] += p[c] as i64 * kj as i64;
            }
        }
        image::Rgb(acc.map(clip8))
    })
}

/// Reads the fields saescope uses from a Hugging Face `preprocessor_config.json`, starting from
/// the family's defaults for anything the file leaves out.
pub fn from_hf_processor_config(
    json: &serde_json::Value,
    defaults: Preprocessor,
) -> Result<Preprocessor> {
    let mut p = defaults;
    let flag = |k: &str| json.get(k).and_then(|v| v.as_bool());
    if let Some(size) = json.get("size") {
        let resize = if let Some(s) = size.get("shortest_edge").and_then(|v| v.as_u64()) {
            Resize::ShortestEdge(s as u32)
        } else if let (Some(h), Some(w)) = (
            size.get("height").and_then(|v| v.as_u64()),
            size.get("width").and_then(|v| v.as_u64()),
        ) {
            Resize::Exact {
                height: h as u32,
                width: w as u32,
            }
        } else if let Some(s) = size.as_u64() {
            Resize::ShortestEdge(s as u32)
        } else {
            return Err(Error::Model(format!(
                "preprocessor_config.json: unsupported `size` {size}"
            )));
        };
        p.resize = resize;
    }
    if flag("do_resize") == Some(false) {
        p.resize = Resize::None;
    }
    if let Some(code) = json.get("resample").and_then(|v| v.as_i64()) {
        p.resample = Resample::from_pil_code(code)?;
    }
    if let Some(c) = json.get("crop_size") {
        let crop = if let (Some(h), Some(w)) = (
            c.get("height").and_then(|v| v.as_u64()),
            c.get("width").and_then(|v| v.as_u64()),
        ) {
            (h as u32, w as u32)
        } else if let Some(s) = c.as_u64() {
            (s as u32, s as u32)
        } else {
            return Err(Error::Model(format!(
                "preprocessor_config.json: unsupported `crop_size` {c}"
            )));
        };
        p.crop = Some(crop);
    }
    if let Some(false) = flag("do_center_crop") {
        p.crop = None;
    }
    let triple = |k: &str| -> Option<[f32; 3]> {
        let a = json.get(k)?.as_array()?;
        (a.len() == 3).then(|| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(0.0) as f32))
    };
    if let Some(m) = triple("image_mean") {
        p.mean = m;
    }
    if let Some(s) = triple("image_std") {
        p.std = s;
    }
    if flag("do_normalize") == Some(false) {
        p.mean = [0.0; 3];
        p.std = [1.0; 3];
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 7×5 test image: R = 37x + 11y, G = 255 - 29x - 13y, B = (x·y·17) mod 256.
    fn test_image() -> RgbImage {
        RgbImage::from_fn(7, 5, |x, y| {
            image::Rgb([
                (37 * x + 11 * y) as u8,
                (255 - 29 * x - 13 * y) as u8,
                ((x * y * 17) % 256) as u8,
            ])
        })
    }

    fn flat(img: &RgbImage) -> Vec<u8> {
        img.as_raw().clone()
    }

    const PIL_BICUBIC_3X2: [u8; 18] = [
        36, 223, 10, 120, 157, 46, 207, 91, 83, 62, 193, 42, 148, 127, 138, 196, 61, 149,
    ];
    const PIL_BICUBIC_10X8: [u8; 240] = [
        0, 255, 0, 16, 242, 0, 45, 220, 0, 71, 199, 0, 97, 179, 0, 123, 159, 0, 149, 139, 0, 175,
        118, 0, 204, 96, 0, 223, 80, 0, 3, 251, 0, 21, 237, 3, 50, 215, 7, 76, 194, 11, 102, 174,
        16, 128, 154, 20, 154, 134, 24, 180, 113, 28, 209, 91, 32, 228, 75, 35, 10, 243, 0, 29,
        227, 9, 58, 205, 22, 84, 184, 35, 110, 164, 48, 136, 144, 61, 162, 124, 73, 188, 103, 86,
        217, 81, 100, 236, 65, 110, 16, 235, 0, 36, 219, 14, 65, 197, 36, 91, 176, 56, 117, 156,
        76, 143, 136, 96, 169, 116, 116, 195, 95, 136, 224, 73, 167, 243, 57, 194, 23, 227, 0, 42,
        211, 19, 71, 189, 50, 97, 168, 76, 123, 148, 103, 149, 128, 135, 175, 108, 168, 201, 87,
        200, 234, 65, 189, 255, 49, 164, 30, 219, 0, 49, 203, 24, 78, 181, 63, 104, 160, 97, 130,
        140, 132, 156, 120, 170, 182, 100, 210, 208, 79, 255, 241, 57, 164, 255, 41, 41, 38, 209,
        0, 57, 193, 29, 86, 171, 78, 112, 150, 121, 138, 130, 176, 164, 110, 159, 190, 90, 94, 227,
        69, 142, 173, 47, 135, 101, 31, 101, 43, 204, 0, 62, 188, 33, 91, 166, 87, 117, 145, 135,
        143, 125, 204, 169, 105, 145, 195, 85, 0, 240, 64, 47, 121, 42, 117, 0, 26, 164,
    ];
    const PIL_BILINEAR_4X3: [u8; 36] = [
        24, 234, 4, 82, 189, 15, 150, 135, 29, 208, 90, 40, 41, 214, 18, 99, 169, 71, 167, 115,
        133, 225, 70, 156, 58, 194, 32, 116, 149, 126, 184, 95, 133, 166, 50, 128,
    ];

    // Expected values computed with Pillow 13.0 (`Image.resize((w, h), resample)`) on the same image.
    #[test]
    fn bicubic_downscale_matches_pillow() {
        let out = resize_rgb8(&test_image(), 3, 2, Resample::Bicubic);
        assert_eq!(flat(&out), PIL_BICUBIC_3X2.to_vec());
    }

    #[test]
    fn bicubic_upscale_matches_pillow() {
        let out = resize_rgb8(&test_image(), 10, 8, Resample::Bicubic);
        assert_eq!(flat(&out), PIL_BICUBIC_10X8.to_vec());
    }

    #[test]
    fn bilinear_downscale_matches_pillow() {
        let out = resize_rgb8(&test_image(), 4, 3, Resample::Bilinear);
        assert_eq!(flat(&out), PIL_BILINEAR_4X3.to_vec());
    }

    #[test]
    fn shortest_edge_and_center_crop_follow_hf_rules() {
        let p = Preprocessor {
            resize: Resize::ShortestEdge(4),
            resample: Resample::Bicubic,
            crop: Some((4, 4)),
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        // 7×5 → shortest edge 4 → 5×4 (5 = 4·7/5 truncated), crop 4×4 starting at x = (5-4)//2 = 0.
        assert_eq!(resized_size(p.resize, 7, 5), (5, 4));
        let (data, t) = p.apply(&test_image());
        assert_eq!(data.len(), 3 * 16);
        assert_eq!((t.crop_x, t.crop_y), (0.0, 0.0));
        let resized = resize_rgb8(&test_image(), 5, 4, Resample::Bicubic);
        assert_eq!(data[0], resized.get_pixel(0, 0).0[0] as f32 / 255.0);
        // A 10×10 crop of a 5×4 image pads with zeros around a centred copy.
        let p2 = Preprocessor {
            resize: Resize::None,
            crop: Some((6, 9)),
            ..p
        };
        let (data, t) = p2.apply(&test_image());
        assert_eq!((t.crop_x, t.crop_y), (-1.0, -1.0));
        assert_eq!(data[0], 0.0);
        assert_eq!(
            data[9 + 1],
            test_image().get_pixel(0, 0).0[0] as f32 / 255.0
        );
    }

    #[test]
    fn normalisation_uses_mean_and_std_per_channel() {
        let p = Preprocessor {
            resize: Resize::None,
            resample: Resample::Bicubic,
            crop: None,
            mean: OPENAI_CLIP_MEAN,
            std: OPENAI_CLIP_STD,
        };
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 128]));
        let (d, _) = p.apply(&img);
        let want = [
            (1.0 - OPENAI_CLIP_MEAN[0]) / OPENAI_CLIP_STD[0],
            (0.0 - OPENAI_CLIP_MEAN[1]) / OPENAI_CLIP_STD[1],
            (128.0 / 255.0 - OPENAI_CLIP_MEAN[2]) / OPENAI_CLIP_STD[2],
        ];
        for c in 0..3 {
            assert!(
                (d[c] - want[c]).abs() < 1e-6,
                "channel {c}: {} vs {}",
                d[c],
                want[c]
            );
        }
    }

    #[test]
    fn transform_maps_boxes_back_to_the_original() {
        let t = InputTransform {
            scale_x: 0.5,
            scale_y: 0.25,
            crop_x: 2.0,
            crop_y: 0.0,
        };
        assert_eq!(t.to_original([0.0, 0.0, 4.0, 4.0]), [4.0, 0.0, 12.0, 16.0]);
    }

    #[test]
    fn reads_hf_processor_configs() {
        let clip: serde_json::Value = serde_json::json!({
            "crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3, "size": 224
        });
        let d = Preprocessor {
            resize: Resize::None,
            resample: Resample::Bilinear,
            crop: None,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let p = from_hf_processor_config(&clip, d.clone()).unwrap();
        assert_eq!(p.resize, Resize::ShortestEdge(224));
        assert_eq!(p.crop, Some((224, 224)));
        assert_eq!(p.resample, Resample::Bicubic);
        let siglip = serde_json::json!({"size": {"height": 224, "width": 224}, "resample": 2, "image_mean": [0.5,0.5,0.5], "image_std": [0.5,0.5,0.5]});
        let p = from_hf_processor_config(&siglip, d).unwrap();
        assert_eq!(
            p.resize,
            Resize::Exact {
                height: 224,
                width: 224
            }
        );
        assert_eq!(p.mean, [0.5; 3]);
    }

    /// DINOv2's preprocessing of a 32 px CIFAR image (shortest edge 256, crop 224 at offset 16):
    /// a bright square on the original lands in the patches whose boxes map back onto it.
    #[test]
    fn patch_boxes_map_back_through_resize_and_crop() {
        let pre = crate::backbone::dinov2::default_preprocessor();
        let mut img = RgbImage::from_pixel(32, 32, image::Rgb([0, 0, 0]));
        for y in 8..12 {
            for x in 20..24 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let (view, t) = pre.view(&img);
        assert_eq!(view.dimensions(), (224, 224));
        assert_eq!((t.scale_x, t.crop_x, t.crop_y), (8.0, 16.0, 16.0));
        // The brightest 14 px patch of the model view.
        let mut best = (0u64, 0u32, 0u32);
        for row in 0..16 {
            for col in 0..16 {
                let sum: u64 = (0..14)
                    .flat_map(|dy| (0..14).map(move |dx| (dx, dy)))
                    .map(|(dx, dy)| view.get_pixel(col * 14 + dx, row * 14 + dy).0[0] as u64)
                    .sum();
                if sum > best.0 {
                    best = (sum, row, col);
                }
            }
        }
        let (_, row, col) = best;
        let b = [
            col as f32 * 14.0,
            row as f32 * 14.0,
            col as f32 * 14.0 + 14.0,
            row as f32 * 14.0 + 14.0,
        ];
        let o = t.to_original(b);
        // The square is at view x 144..176, y 48..80: patch (row 4, col 11) lies wholly inside
        // it and maps back to original x 21.25..23, y 9..10.75.
        assert_eq!((row, col), (4, 11));
        assert_eq!(o, [21.25, 9.0, 23.0, 10.75]);
        assert!(
            o[0] < 24.0 && o[2] > 20.0 && o[1] < 12.0 && o[3] > 8.0,
            "{o:?}"
        );
        // The top-left patch starts at original pixel 2 (the crop drops 2 px per side).
        assert_eq!(t.to_original([0.0, 0.0, 14.0, 14.0])[0], 2.0);
    }
}
