//! Uploaded X-rays: checked before decoding (format by content, size from the header), decoded to
//! 8-bit gray, and stored content-addressed as `<sha256 of the PNG>.png`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::GrayImage;
use sha2::{Digest, Sha256};

use crate::data::images;
use crate::service::Error;

/// Largest accepted image side: the NIH originals are 1024², common scanners stay below 4096.
pub const MAX_SIDE: u32 = 4096;

/// Checks an upload's bytes (format by its first bytes, size before decoding) and decodes it to
/// 8-bit gray.
pub fn decode_upload(bytes: &[u8]) -> Result<GrayImage, Error> {
    if bytes.is_empty() {
        return Err(Error::invalid("image", "choose an image file to upload"));
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, image::ImageFormat::Png | image::ImageFormat::Jpeg));
    if format.is_none() {
        return Err(Error::invalid(
            "image",
            "the file is not a PNG or JPEG image (judged by its content, not its name); upload a chest X-ray as PNG or JPEG",
        ));
    }
    // Read the header only, so a small file claiming a huge image is refused before decoding.
    let (width, height) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .and_then(|reader| reader.into_dimensions().map_err(std::io::Error::other))
        .map_err(|e| {
            Error::invalid(
                "image",
                format!("the image header cannot be read ({e}): is the file damaged?"),
            )
        })?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::invalid(
            "image",
            format!("the image is {width} × {height} pixels; at most {MAX_SIDE} × {MAX_SIDE} are accepted: downscale it first"),
        ));
    }
    if width == 0 || height == 0 {
        return Err(Error::invalid("image", "the image has no pixels"));
    }
    images::decode_gray(Path::new("upload"), bytes).map_err(|e| {
        let detail = e.to_string();
        let detail = detail.strip_prefix("upload: ").unwrap_or(&detail).to_string();
        Error::invalid("image", format!("the image cannot be decoded: {detail}"))
    })
}

/// Encodes a gray image as PNG in memory.
pub fn encode_png(image: &GrayImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(image.clone())
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encoding a PNG into memory cannot fail");
    bytes
}

/// Stores the gray image as `<sha256 of the PNG>.png` (once) and returns the hash and the PNG.
pub fn store_upload(dir: &Path, image: &GrayImage) -> Result<(String, Vec<u8>), Error> {
    let png = encode_png(image);
    let sha = hex::encode(Sha256::digest(&png));
    let path = dir.join(format!("{sha}.png"));
    if !path.is_file() {
        std::fs::create_dir_all(dir).map_err(|e| crate::data::Error::io(dir, e))?;
        crate::data::write_atomically(&path, &png)?;
    }
    Ok((sha, png))
}

/// The stored upload named by `sha` in `dir` (64 lowercase hex digits, nothing else).
pub fn upload_path(dir: &Path, sha: &str) -> Result<PathBuf, Error> {
    let valid = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let path = dir.join(format!("{sha}.png"));
    if !valid || !path.is_file() {
        return Err(Error::NotFound(format!(
            "no uploaded image '{sha}': upload it again at /predict"
        )));
    }
    Ok(path)
}

/// The centred square the model sees (uploads of other shapes are cropped to it).
pub fn centre_square(image: &GrayImage) -> GrayImage {
    let (w, h) = image.dimensions();
    if w == h {
        return image.clone();
    }
    let side = w.min(h);
    image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_sniffed_by_content_and_size_checked_before_decoding() {
        let ok = encode_png(&GrayImage::from_pixel(8, 6, image::Luma([7])));
        assert_eq!(decode_upload(&ok).unwrap().dimensions(), (8, 6));

        let text = decode_upload(b"name,label\nx.png,Effusion\n").unwrap_err();
        assert!(matches!(text, Error::Invalid { field: "image", .. }), "{text:?}");
        assert!(text.to_string().contains("not a PNG or JPEG"), "{text}");

        let truncated = decode_upload(&ok[..ok.len() - 20]).unwrap_err();
        assert!(truncated.to_string().contains("cannot be decoded"), "{truncated}");

        let huge = encode_png(&GrayImage::new(MAX_SIDE + 1, 2));
        let err = decode_upload(&huge).unwrap_err();
        assert!(err.to_string().contains("4097 × 2 pixels"), "{err}");
    }

    #[test]
    fn stored_uploads_are_content_addressed_and_only_hex_names_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let image = GrayImage::from_pixel(4, 4, image::Luma([200]));
        let (sha, png) = store_upload(tmp.path(), &image).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(&png)));
        assert_eq!(std::fs::read(tmp.path().join(format!("{sha}.png"))).unwrap(), png);
        let (again, _) = store_upload(tmp.path(), &image).unwrap();
        assert_eq!(again, sha, "the same image gets the same address");
        assert_eq!(
            upload_path(tmp.path(), &sha).unwrap(),
            tmp.path().join(format!("{sha}.png"))
        );
        for bad in ["../etc/passwd", &sha.to_uppercase(), &sha[..63]] {
            assert!(matches!(upload_path(tmp.path(), bad), Err(Error::NotFound(_))), "{bad}");
        }
    }
}
