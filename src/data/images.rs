//! Image files of a data set: finding them by name ([`ImageIndex`]), decoding any PNG/JPEG we
//! meet to 8-bit grayscale ([`load_gray`]), the square resize every model input goes through
//! ([`SquareResizer`]), and the found/missing/unreadable check ([`check_images`]).
//!
//! Non-square images are centre-cropped to a square on their shorter side before resizing, so
//! anatomy is never stretched; NIH images are all 1024², so this only matters for other sources.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::GrayImage;
use rayon::prelude::*;

use super::{Error, LabelTable, Result};

/// File extensions we treat as images (compared lower-case).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// How many names each list in a report shows; the counts are always complete.
pub const REPORT_EXAMPLES: usize = 5;

/// Image files by file name, from a flat folder or NIH's `images_001 … images_012` layout.
#[derive(Debug, Clone, Default)]
pub struct ImageIndex {
    root: PathBuf,
    by_name: HashMap<String, PathBuf>,
}

impl ImageIndex {
    /// Finds the images under `dir`: files directly in it, and in sub-folders named `images` or
    /// `images_*` (NIH ships `images_001/images/…png`), two levels deep at most. When a name
    /// occurs twice the first in sorted path order wins, so the result does not depend on the
    /// order the file system lists entries in.
    pub fn scan(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::Format {
                path: root,
                message: "image folder not found: pass the folder holding the PNGs, or NIH's folder \
                          with images_001 … images_012 in it"
                    .into(),
            });
        }
        let mut by_name = HashMap::new();
        scan_folder(&root, 0, &mut by_name)?;
        Ok(ImageIndex { root, by_name })
    }

    /// Builds an index from explicit paths (tests, or callers that already know the files).
    pub fn from_paths(root: impl Into<PathBuf>, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut by_name = HashMap::new();
        for path in paths {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                by_name.entry(name.to_owned()).or_insert(path);
            }
        }
        ImageIndex {
            root: root.into(),
            by_name,
        }
    }

    /// The folder this index was scanned from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the image with file name `name` (e.g. `00000001_000.png`).
    pub fn get(&self, name: &str) -> Option<&Path> {
        self.by_name.get(name).map(PathBuf::as_path)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// All file names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

fn scan_folder(dir: &Path, depth: usize, by_name: &mut HashMap<String, PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            if depth < 2 && (name == "images" || name.starts_with("images_")) {
                scan_folder(&path, depth + 1, by_name)?;
            }
        } else if is_image_name(name) {
            if let Some(first) = by_name.get(name) {
                tracing::warn!("{name} is in two places; using {}", first.display());
            } else {
                by_name.insert(name.to_owned(), path);
            }
        }
    }
    Ok(())
}

fn is_image_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Decodes a PNG or JPEG (any bit depth, gray/gray+alpha/RGB/RGBA) to 8-bit grayscale. Alpha is
/// dropped (radiographs are opaque), colour becomes luma, 16-bit is scaled to 8-bit.
pub fn load_gray(path: impl AsRef<Path>) -> Result<GrayImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_gray(path, &bytes)
}

/// [`load_gray`] on bytes already read; `path` only names the file in errors.
pub fn decode_gray(path: &Path, bytes: &[u8]) -> Result<GrayImage> {
    let image_error = |message: String| Error::Image {
        path: path.to_path_buf(),
        message,
    };
    let format = image::guess_format(bytes)
        .map_err(|_| image_error("not a PNG or JPEG file (unrecognised first bytes)".into()))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(image_error(format!(
            "{format:?} images are not supported: convert to PNG or JPEG"
        )));
    }
    let decoded = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| image_error(format!("cannot decode {format:?} (truncated or damaged file?): {e}")))?;
    Ok(decoded.into_luma8())
}

/// Resizes grayscale images to `size`×`size` with a Lanczos3 convolution whose support widens
/// with the scale factor, i.e. a proper area-weighted downscale like PIL's `LANCZOS` (SIMD via
/// fast_image_resize). Keeps its scratch buffers, so reuse one per thread.
#[derive(Debug, Clone, Default)]
pub struct SquareResizer {
    resizer: Resizer,
}

impl SquareResizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the resized image into `out`, which must hold `size * size` bytes.
    pub fn resize_into(&mut self, src: &GrayImage, size: u32, out: &mut [u8]) -> Result<()> {
        let invalid = |message: String| Error::Invalid(message);
        if size == 0 {
            return Err(invalid("image size must be at least 1 px".into()));
        }
        if out.len() != (size as usize) * (size as usize) {
            return Err(invalid(format!(
                "resize buffer holds {} bytes, a {size}² image needs {}",
                out.len(),
                size as usize * size as usize
            )));
        }
        let (width, height) = src.dimensions();
        if width == 0 || height == 0 {
            return Err(invalid("cannot resize an empty image".into()));
        }
        // Cut the centre square out first (rare: NIH images are square) so pixels outside it do
        // not leak into the edges through the filter's support.
        let side = width.min(height);
        let square;
        let src = if width == height {
            src
        } else {
            square = image::imageops::crop_imm(src, (width - side) / 2, (height - side) / 2, side, side).to_image();
            &square
        };
        let src_view = ImageRef::new(side, side, src.as_raw(), PixelType::U8)
            .map_err(|e| invalid(format!("image buffer does not match its size: {e}")))?;
        let mut dst =
            Image::from_slice_u8(size, size, out, PixelType::U8).map_err(|e| invalid(format!("resize buffer: {e}")))?;
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        self.resizer
            .resize(&src_view, &mut dst, &options)
            .map_err(|e| invalid(format!("resize failed: {e}")))
    }

    /// Returns the resized image.
    pub fn resize(&mut self, src: &GrayImage, size: u32) -> Result<GrayImage> {
        let mut out = vec![0u8; size as usize * size as usize];
        self.resize_into(src, size, &mut out)?;
        Ok(GrayImage::from_raw(size, size, out).expect("buffer is size² bytes"))
    }
}

/// Decodes an image and resizes it to `size`×`size`: exactly the pixels the cache stores.
pub fn load_resized(path: impl AsRef<Path>, size: u32) -> Result<GrayImage> {
    SquareResizer::new().resize(&load_gray(path)?, size)
}

/// An image that is listed but could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub name: String,
    pub message: String,
}

/// How thoroughly [`check_images`] looks at each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDepth {
    /// Only whether a file with the name exists.
    Exists,
    /// Also read each file's header (format and size): fast, catches non-images.
    Header,
    /// Decode every image fully (in parallel): catches truncated files too.
    Decode,
}

/// Which of a label table's images are present and readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCheck {
    /// Rows in the label table.
    pub listed: usize,
    /// Files found and (at the chosen depth) readable.
    pub readable: usize,
    /// Listed names with no file, in table order.
    pub missing: Vec<String>,
    /// Found files that failed the check, in table order.
    pub unreadable: Vec<Unreadable>,
}

impl ImageCheck {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unreadable.is_empty()
    }
}

impl fmt::Display for ImageCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} listed images readable, {} missing, {} unreadable",
            self.readable,
            self.listed,
            self.missing.len(),
            self.unreadable.len()
        )?;
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(REPORT_EXAMPLES).map(String::as_str).collect();
            let more = self.missing.len() - shown.len();
            write!(f, "\n  missing: {}", shown.join(", "))?;
            if more > 0 {
                write!(f, " and {more} more")?;
            }
        }
        if !self.unreadable.is_empty() {
            write!(f, "\n  unreadable:")?;
            for bad in self.unreadable.iter().take(REPORT_EXAMPLES) {
                write!(f, "\n    {}", bad.message)?;
            }
            let more = self.unreadable.len().saturating_sub(REPORT_EXAMPLES);
            if more > 0 {
                write!(f, "\n    and {more} more")?;
            }
        }
        Ok(())
    }
}

/// Checks every image of `table` against `index` at the given depth.
pub fn check_images(table: &LabelTable, index: &ImageIndex, depth: CheckDepth) -> ImageCheck {
    let results: Vec<Option<Result<()>>> = table
        .records
        .par_iter()
        .map(|record| {
            let path = index.get(&record.image)?;
            Some(match depth {
                CheckDepth::Exists => Ok(()),
                CheckDepth::Header => read_header(path).map(|_| ()),
                CheckDepth::Decode => load_gray(path).map(|_| ()),
            })
        })
        .collect();
    let mut check = ImageCheck {
        listed: table.records.len(),
        ..ImageCheck::default()
    };
    for (record, result) in table.records.iter().zip(results) {
        match result {
            None => check.missing.push(record.image.clone()),
            Some(Ok(())) => check.readable += 1,
            Some(Err(e)) => check.unreadable.push(Unreadable {
                name: record.image.clone(),
                message: e.to_string(),
            }),
        }
    }
    check
}

/// Reads just enough of a file to know it is a PNG/JPEG and its dimensions.
fn read_header(path: &Path) -> Result<(u32, u32)> {
    let image_error = |message: String| Error::Image {
        path: path.to_path_buf(),
        message,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => return Err(image_error("not a PNG or JPEG file (unrecognised first bytes)".into())),
    }
    reader
        .into_dimensions()
        .map_err(|e| image_error(format!("unreadable image header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: u32, height: u32, f: impl Fn(u32, u32) -> u8) -> GrayImage {
        GrayImage::from_fn(width, height, |x, y| image::Luma([f(x, y)]))
    }

    #[test]
    fn resize_of_a_flat_image_stays_flat() {
        let src = gray(1024, 1024, |_, _| 77);
        let out = SquareResizer::new().resize(&src, 256).unwrap();
        assert_eq!(out.dimensions(), (256, 256));
        assert!(out.pixels().all(|p| p.0[0] == 77), "Lanczos weights must sum to one");
    }

    #[test]
    fn resize_to_the_same_size_is_identity() {
        let src = gray(64, 64, |x, y| ((x * 3 + y * 5) % 256) as u8);
        let out = SquareResizer::new().resize(&src, 64).unwrap();
        assert_eq!(out.as_raw(), src.as_raw());
    }

    #[test]
    fn non_square_images_are_centre_cropped_not_stretched() {
        // Left and right quarters black, middle half white: a centre crop keeps only white.
        let src = gray(200, 100, |x, _| if (50..150).contains(&x) { 255 } else { 0 });
        let out = SquareResizer::new().resize(&src, 10).unwrap();
        assert!(out.pixels().all(|p| p.0[0] == 255), "{:?}", out.as_raw());
        // Tall image: top and bottom quarters dropped.
        let src = gray(100, 200, |_, y| if (50..150).contains(&y) { 10 } else { 200 });
        let out = SquareResizer::new().resize(&src, 10).unwrap();
        assert!(out.pixels().all(|p| p.0[0] == 10), "{:?}", out.as_raw());
    }

    #[test]
    fn downscale_averages_fine_detail() {
        // A 1-px checkerboard has mean 127.5: an area-aware downscale gives ~mid-gray everywhere;
        // point sampling would give pure black or white.
        let src = gray(512, 512, |x, y| if (x + y) % 2 == 0 { 0 } else { 255 });
        let out = SquareResizer::new().resize(&src, 64).unwrap();
        assert!(
            out.pixels().all(|p| (120..=135).contains(&p.0[0])),
            "{:?}",
            &out.as_raw()[..16]
        );
    }

    #[test]
    fn resize_rejects_bad_arguments() {
        let src = gray(8, 8, |_, _| 0);
        let mut resizer = SquareResizer::new();
        assert!(resizer.resize(&src, 0).is_err());
        assert!(resizer.resize_into(&src, 4, &mut [0u8; 15]).is_err());
    }

    #[test]
    fn non_images_are_named_errors() {
        let path = Path::new("notes.png");
        let err = decode_gray(path, b"hello, not a png").unwrap_err();
        assert!(matches!(err, Error::Image { .. }), "{err:?}");
        assert!(err.to_string().contains("notes.png"), "{err}");
        let err = decode_gray(path, b"GIF89a......").unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn image_names_by_extension() {
        assert!(is_image_name("a.png") && is_image_name("B.JPG") && is_image_name("c.jpeg"));
        assert!(!is_image_name("a.csv") && !is_image_name("png"));
    }
}
