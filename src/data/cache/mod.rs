//! The decode/resize cache: every image of a label table decoded and resized once, stored as raw
//! `size`×`size` u8 pixels in one memory-mappable file that training reads without decoding.
//!
//! File layout (little-endian), version 1:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `CXR8PIX\0` |
//! | 8..12 | format version |
//! | 12..16 | image side in px |
//! | 16..24 | image count |
//! | 24..32 | length of the id block |
//! | 32..40, 40..48 | pixel mean and std (f64, pixel / 255 units) |
//! | 48..80 | input key (label contents, size, recipe, names of the images found) |
//! | 80..112 | SHA-256 of the pixel block (checked by [`Cache::verify`]) |
//! | 112..120 | total file length |
//! | 120..152 | SHA-256 of bytes 0..120 and the id block (checked on every open) |
//! | 192.. | pixels, image after image, then the ids joined by `\n` |
//!
//! Files are written to a temp file, fsynced and renamed, so a crash leaves either no cache or a
//! whole one; a truncated or foreign file fails [`Cache::open`] and [`build`] rebuilds it.

mod build;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::{Error, LabelTable, Result};
pub use build::{build, BuildOptions, CacheReport, ProgressFn};

/// Where the CLI keeps caches unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = "data/cache";
/// File extension of cache files.
pub const EXTENSION: &str = "cxr8px";

pub(super) const MAGIC: [u8; 8] = *b"CXR8PIX\0";
pub(super) const VERSION: u32 = 1;
/// Header size; a multiple of 64 so every image starts cache-line aligned when `size²` is too.
pub(super) const HEADER_LEN: usize = 192;
pub(super) const META_CHECKED_LEN: usize = 120;
/// Names how pixels are made from files; part of the key, so changing the decoder or resize
/// recipe (and this string) never reuses stale pixels.
pub(super) const PIXEL_RECIPE: &str = "gray8; centre crop to square; Lanczos3 convolution (fast_image_resize 5)";

/// An open, memory-mapped cache.
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    map: Mmap,
    size: u32,
    count: usize,
    mean: f64,
    std: f64,
    key: [u8; 32],
    pixel_digest: [u8; 32],
    ids: Vec<String>,
    index: HashMap<String, usize>,
}

impl Cache {
    /// Opens and checks a cache: magic, version, length and the header/id checksum. Pixels are
    /// not hashed here (gigabytes for the full data set); see [`Cache::verify`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: caches are only ever replaced by rename, never written in place, so the mapped
        // file does not change under us while we hold it.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::Format {
            path: path.to_path_buf(),
            message: format!("{message}; delete it or run `cxr8 dataset cache` to rebuild it"),
        };
        if map.len() < HEADER_LEN || map[0..8] != MAGIC {
            return Err(bad("not a cxr8 image cache (no cache header)".into()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(map[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "cache format version {version}, this cxr8 reads {VERSION}"
            )));
        }
        let size = u32_at(12);
        let count = u64_at(16);
        let ids_len = u64_at(24);
        let file_len = u64_at(112);
        if file_len != map.len() as u64 {
            return Err(bad(format!(
                "truncated or extended: {} bytes, header says {file_len}",
                map.len()
            )));
        }
        let pixels_len = u64::from(size)
            .checked_mul(u64::from(size))
            .and_then(|s| s.checked_mul(count));
        let expected = pixels_len.and_then(|p| p.checked_add(HEADER_LEN as u64 + ids_len));
        if expected != Some(file_len) {
            return Err(bad("damaged header: sizes do not add up to the file length".into()));
        }
        let pixels_end = HEADER_LEN + pixels_len.expect("checked above") as usize;
        let ids_block = &map[pixels_end..];
        if meta_digest(&map[..META_CHECKED_LEN], ids_block)[..] != map[120..152] {
            return Err(bad("damaged header or image id list (checksum mismatch)".into()));
        }
        let ids_text = std::str::from_utf8(ids_block).map_err(|_| bad("image id list is not UTF-8".into()))?;
        let ids: Vec<String> = if count == 0 {
            Vec::new()
        } else {
            ids_text.split('\n').map(str::to_owned).collect()
        };
        if ids.len() as u64 != count {
            return Err(bad(format!("{} image ids for {count} images", ids.len())));
        }
        let index = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        let f64_at = |at: usize| f64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
        Ok(Cache {
            path: path.to_path_buf(),
            size,
            count: count as usize,
            mean: f64_at(32),
            std: f64_at(40),
            key: map[48..80].try_into().expect("32 bytes"),
            pixel_digest: map[80..112].try_into().expect("32 bytes"),
            ids,
            index,
            map,
        })
    }

    /// Hashes every pixel and compares with the header: catches damage inside the pixel block,
    /// which [`Cache::open`] does not look at.
    pub fn verify(&self) -> Result<()> {
        let digest: [u8; 32] = Sha256::digest(self.pixels()).into();
        if digest != self.pixel_digest {
            return Err(Error::Format {
                path: self.path.clone(),
                message: "pixel data damaged (checksum mismatch); delete it or run `cxr8 dataset cache` to rebuild it"
                    .into(),
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Side of every (square) image in px.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Pixels of image `i`, row-major, `size²` bytes. Panics when `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "image {i} out of range: the cache holds {}", self.count);
        let side = self.size as usize * self.size as usize;
        let start = HEADER_LEN + i * side;
        &self.map[start..start + side]
    }

    /// Image file names in cache order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Position of an image (by file name) in the cache.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Mean pixel value of all cached images, in pixel/255 units; training normalises by it.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Standard deviation of all cached pixels, in pixel/255 units.
    pub fn std(&self) -> f64 {
        self.std
    }

    fn pixels(&self) -> &[u8] {
        let side = self.size as usize * self.size as usize;
        &self.map[HEADER_LEN..HEADER_LEN + self.count * side]
    }
}

/// The cache file for a label table at a size: `<cache_dir>/<label file stem>-<size>px-<key>.cxr8px`,
/// the key hashing the table's contents (image names, patients, labels), the size and the pixel
/// recipe. Which of the images were found is checked inside the file (see [`build`]).
pub fn path_for(cache_dir: impl AsRef<Path>, table: &LabelTable, size: u32) -> PathBuf {
    let key = hex::encode(&table_key(table, size)[..8]);
    let file_name = table.source.file_name().and_then(|n| n.to_str()).unwrap_or("labels");
    let stem = file_name.trim_end_matches(".gz").trim_end_matches(".csv");
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_dir.as_ref().join(format!("{stem}-{size}px-{key}.{EXTENSION}"))
}

pub(super) fn table_key(table: &LabelTable, size: u32) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(PIXEL_RECIPE.as_bytes());
    hash.update(VERSION.to_le_bytes());
    hash.update(size.to_le_bytes());
    for label in &table.labels {
        hash.update(label.as_bytes());
        hash.update([0]);
    }
    hash.update([1]);
    for record in &table.records {
        hash.update(record.image.as_bytes());
        hash.update([0]);
        hash.update(record.patient.as_bytes());
        hash.update([0]);
        hash.update(record.targets.to_le_bytes());
    }
    hash.finalize().into()
}

pub(super) fn input_key(table_key: &[u8; 32], found: &[(&str, &Path)]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(table_key);
    for (name, _) in found {
        hash.update(name.as_bytes());
        hash.update([0]);
    }
    hash.finalize().into()
}

pub(super) fn meta_digest(header: &[u8], ids_block: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(header);
    hash.update(ids_block);
    hash.finalize().into()
}

#[cfg(test)]
mod tests {

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use image::GrayImage;

    use super::build::*;
    use super::*;
    use crate::data::images::{self, ImageIndex};

    fn nih_table(names: &[&str]) -> LabelTable {
        let mut text = String::from(
            "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
             OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n",
        );
        for (i, name) in names.iter().enumerate() {
            text.push_str(&format!("{name},No Finding,0,{},50,M,PA,40,40,0.1,0.1\n", i + 1));
        }
        LabelTable::from_text("labels.csv", text).unwrap()
    }

    /// Writes `n` small PNGs with distinct content and returns the folder and names.
    fn images(dir: &Path, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let name = format!("0000000{i}_000.png");
                GrayImage::from_fn(40, 40, |x, y| {
                    image::Luma([((x * 5 + y * 3 + i as u32 * 40) % 256) as u8])
                })
                .save(dir.join(&name))
                .unwrap();
                name
            })
            .collect()
    }

    #[test]
    fn round_trip_matches_load_and_resize() {
        let dir = tempfile::tempdir().unwrap();
        let names = images(dir.path(), 3);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = nih_table(&refs);
        let index = ImageIndex::scan(dir.path()).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let options = BuildOptions {
            progress: Some(Arc::new(move |_, total| {
                assert_eq!(total, 3);
                counter.fetch_add(1, Ordering::Relaxed);
            })),
            ..BuildOptions::default()
        };
        let (cache, report) = build(&table, &index, 16, dir.path().join("cache"), &options).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert!(!report.reused);
        assert_eq!((cache.len(), cache.size()), (3, 16));
        assert_eq!(cache.ids(), &names[..]);
        for (i, name) in names.iter().enumerate() {
            let expected = images::load_resized(dir.path().join(name), 16).unwrap();
            assert_eq!(cache.image(i), expected.as_raw().as_slice(), "{name}");
            assert_eq!(cache.index_of(name), Some(i));
        }
        assert_eq!(cache.index_of("nope.png"), None);
        cache.verify().unwrap();

        // Mean/std equal a direct computation over the same pixels.
        let all: Vec<f64> = (0..3)
            .flat_map(|i| cache.image(i).to_vec())
            .map(|p| p as f64 / 255.0)
            .collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let std = (all.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
        assert!((cache.mean() - mean).abs() < 1e-9 && (cache.std() - std).abs() < 1e-9);

        // Same inputs: the file is reused, not rebuilt.
        let (_, again) = build(&table, &index, 16, dir.path().join("cache"), &BuildOptions::default()).unwrap();
        assert!(again.reused);
    }

    #[test]
    fn cache_bytes_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let names = images(dir.path(), 5);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = nih_table(&refs);
        let index = ImageIndex::scan(dir.path()).unwrap();
        let one = |threads, sub: &str| {
            let options = BuildOptions {
                threads: Some(threads),
                ..BuildOptions::default()
            };
            let (cache, _) = build(&table, &index, 12, dir.path().join(sub), &options).unwrap();
            std::fs::read(cache.path()).unwrap()
        };
        assert_eq!(one(1, "a"), one(2, "b"));
    }

    #[test]
    fn damaged_files_are_rejected_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let names = images(dir.path(), 2);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = nih_table(&refs);
        let index = ImageIndex::scan(dir.path()).unwrap();
        let cache_dir = dir.path().join("cache");
        let (cache, _) = build(&table, &index, 8, &cache_dir, &BuildOptions::default()).unwrap();
        let path = cache.path().to_path_buf();
        drop(cache);
        let good = std::fs::read(&path).unwrap();

        let reject = |bytes: &[u8], what: &str| {
            std::fs::write(&path, bytes).unwrap();
            let err = Cache::open(&path).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        };
        reject(&good[..good.len() - 1], "truncated");
        reject(
            b"PK\x03\x04 some zip file that happens to sit here",
            "not a cxr8 image cache",
        );
        let mut bad_id = good.clone();
        *bad_id.last_mut().unwrap() ^= 1;
        reject(&bad_id, "checksum");

        // A flipped pixel passes the cheap open but not verify().
        let mut bad_pixel = good.clone();
        bad_pixel[HEADER_LEN + 3] ^= 0xff;
        std::fs::write(&path, &bad_pixel).unwrap();
        assert!(Cache::open(&path).unwrap().verify().is_err());

        // build() replaces a broken file with a good one.
        std::fs::write(&path, &good[..100]).unwrap();
        let (cache, report) = build(&table, &index, 8, &cache_dir, &BuildOptions::default()).unwrap();
        assert!(!report.reused);
        assert_eq!(std::fs::read(cache.path()).unwrap(), good);
    }

    #[test]
    fn a_build_killed_midway_leaves_nothing_that_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let names = images(dir.path(), 3);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = nih_table(&refs);
        let index = ImageIndex::scan(dir.path()).unwrap();
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir_all(&cache_dir).unwrap();
        let path = path_for(&cache_dir, &table, 8);
        let file_name = path.file_name().unwrap().to_str().unwrap().to_owned();
        // What a SIGKILLed build leaves: a half-written temp file (pid of a process that cannot
        // exist: above the kernel's pid_max), no cache at the final path.
        let dead = cache_dir.join(format!(".{file_name}.tmp-{}", u32::MAX - 1));
        std::fs::write(&dead, [7u8; 100]).unwrap();
        // And a truncated cache at the final path, as a non-atomic writer would leave.
        std::fs::write(&path, b"CXR8PIX\0\x01\0\0\0").unwrap();
        assert!(Cache::open(&path).unwrap_err().to_string().contains("rebuild"));

        let (cache, report) = build(&table, &index, 8, &cache_dir, &BuildOptions::default()).unwrap();
        assert!(!report.reused, "the truncated file must not be reused");
        assert_eq!(cache.len(), 3);
        cache.verify().unwrap();
        assert!(!dead.exists(), "the dead build's temp file is removed");
        let leftovers: Vec<_> = std::fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn missing_and_unreadable_images() {
        let dir = tempfile::tempdir().unwrap();
        let mut names = images(dir.path(), 2);
        std::fs::write(dir.path().join("00000009_000.png"), b"not a png").unwrap();
        names.insert(1, "00000009_000.png".into());
        names.push("00000010_000.png".into()); // no file
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = nih_table(&refs);
        let index = ImageIndex::scan(dir.path()).unwrap();
        let cache_dir = dir.path().join("cache");

        let err = build(&table, &index, 8, &cache_dir, &BuildOptions::default()).unwrap_err();
        assert!(err.to_string().contains("00000010_000.png"), "{err}");
        assert!(err.to_string().contains("--allow-missing"), "{err}");

        let allow = BuildOptions {
            allow_missing: true,
            ..BuildOptions::default()
        };
        let (cache, report) = build(&table, &index, 8, &cache_dir, &allow).unwrap();
        assert_eq!(cache.ids(), &[names[0].clone(), names[2].clone()]);
        assert_eq!(report.missing, vec!["00000010_000.png".to_owned()]);
        assert_eq!(report.unreadable.len(), 1);
        assert_eq!(report.unreadable[0].name, "00000009_000.png");
        // The gap left by the unreadable image was closed: image 1 is the third file.
        let expected = images::load_resized(dir.path().join(&names[2]), 8).unwrap();
        assert_eq!(cache.image(1), expected.as_raw().as_slice());
        drop(cache);

        // Reusing that cache remembers what was skipped, and strict mode still refuses.
        let (_, again) = build(&table, &index, 8, &cache_dir, &allow).unwrap();
        assert!(again.reused);
        assert_eq!(again.unreadable.len(), 1);
        let strict_table = nih_table(&[&names[0], &names[1], &names[2]]);
        let err = build(&strict_table, &index, 8, &cache_dir, &BuildOptions::default()).unwrap_err();
        assert!(err.to_string().contains("00000009_000.png"), "{err}");
    }
}
