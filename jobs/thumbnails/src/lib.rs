//! Thumbnails: decodes an image (PNG or JPEG), scales it so that its longer edge is at most
//! `size` pixels (never enlarging), with a Lanczos filter, and encodes it as PNG.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader};

/// A thumbnail's PNG bytes and size.
pub struct Thumbnail {
    /// The encoded PNG.
    pub png: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The thumbnail of the encoded image `bytes`.
pub fn thumbnail(bytes: &[u8], size: u32) -> Result<Thumbnail, String> {
    let image = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| format!("cannot decode the image: {e}"))?;
    let (w, h) = (image.width(), image.height());
    let scale = (size as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let small = image.resize_exact(tw, th, FilterType::Lanczos3);
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    Ok(Thumbnail {
        png,
        width: tw,
        height: th,
    })
}
