//! Data layer: label files as downloaded, images, patient-disjoint splits, decode/resize caches,
//! the synthetic demo data set, and the batch loader with its augmentation (plain f32 buffers).
//! Knows nothing about models, Burn, the store or the web.

pub mod augment;
pub mod cache;
pub mod demo;
mod error;
pub mod images;
pub mod labels;
pub mod loader;
pub mod split;
pub mod stats;
pub mod table;

pub use error::Error;
pub use table::{LabelFormat, LabelTable, Record, Task};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes a file so that readers see either the old content or the whole new content, never a
/// torn write: temp file in the same folder, fsync, rename.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
