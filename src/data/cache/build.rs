//! Building a cache: decoding and resizing every listed image in parallel into a new file
//! (reserved up front, written through a map, renamed into place when complete), and the
//! report of what was skipped.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use memmap2::MmapMut;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::data::images::{self, ImageIndex, SquareResizer, Unreadable, REPORT_EXAMPLES};
use crate::data::{Error, LabelTable, Result};

use super::*;

/// Called from worker threads with (images done, images to do).
pub type ProgressFn = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// How [`build`] behaves.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Build from the images that are there when some are missing or unreadable, instead of
    /// failing; the report names what was skipped.
    pub allow_missing: bool,
    /// Decoder threads; `None` = rayon's default (all cores).
    pub threads: Option<usize>,
    /// Progress callback for a bar in the CLI or the web page.
    pub progress: Option<ProgressFn>,
    /// Rebuild even when a valid cache for the same inputs exists.
    pub force: bool,
}

impl fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildOptions")
            .field("allow_missing", &self.allow_missing)
            .field("threads", &self.threads)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("force", &self.force)
            .finish()
    }
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct CacheReport {
    pub path: PathBuf,
    /// Rows in the label table.
    pub listed: usize,
    /// Images in the cache.
    pub cached: usize,
    /// Listed images with no file.
    pub missing: Vec<String>,
    /// Files that could not be decoded (for a reused cache: those the build skipped).
    pub unreadable: Vec<Unreadable>,
    /// An existing cache for the same inputs was used; nothing was decoded.
    pub reused: bool,
    pub seconds: f64,
}

impl CacheReport {
    /// Decode+resize throughput of this build (0 when the cache was reused).
    pub fn images_per_sec(&self) -> f64 {
        if self.reused || self.seconds <= 0.0 {
            0.0
        } else {
            self.cached as f64 / self.seconds
        }
    }
}

impl fmt::Display for CacheReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reused {
            write!(f, "reused {} ({} images)", self.path.display(), self.cached)?;
        } else {
            write!(
                f,
                "cached {} of {} listed images in {:.1} s ({:.0} images/s) to {}",
                self.cached,
                self.listed,
                self.seconds,
                self.images_per_sec(),
                self.path.display()
            )?;
        }
        write_skipped(f, &self.missing, &self.unreadable)
    }
}

fn write_skipped(f: &mut impl fmt::Write, missing: &[String], unreadable: &[Unreadable]) -> fmt::Result {
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(REPORT_EXAMPLES).map(String::as_str).collect();
        write!(f, "\n  {} missing: {}", missing.len(), shown.join(", "))?;
        if missing.len() > shown.len() {
            write!(f, " and {} more", missing.len() - shown.len())?;
        }
    }
    if !unreadable.is_empty() {
        write!(f, "\n  {} unreadable:", unreadable.len())?;
        for bad in unreadable.iter().take(REPORT_EXAMPLES) {
            write!(f, "\n    {}", bad.message)?;
        }
        if unreadable.len() > REPORT_EXAMPLES {
            write!(f, "\n    and {} more", unreadable.len() - REPORT_EXAMPLES)?;
        }
    }
    Ok(())
}

/// Decodes and resizes every image of `table` found in `index` into the cache at
/// [`path_for`]`(cache_dir, table, size)`, or reuses that cache when it is valid and was built
/// from the same images. Missing or unreadable images fail the build with a report of them,
/// unless `options.allow_missing`.
pub fn build(
    table: &LabelTable,
    index: &ImageIndex,
    size: u32,
    cache_dir: impl AsRef<Path>,
    options: &BuildOptions,
) -> Result<(Cache, CacheReport)> {
    let started = Instant::now();
    if size == 0 {
        return Err(Error::Invalid("image size must be at least 1 px".into()));
    }
    let path = path_for(&cache_dir, table, size);
    let mut seen = HashSet::new();
    let mut found: Vec<(&str, &Path)> = Vec::new();
    let mut missing = Vec::new();
    for record in &table.records {
        if !seen.insert(record.image.as_str()) {
            continue;
        }
        match index.get(&record.image) {
            Some(file) => found.push((&record.image, file)),
            None => missing.push(record.image.clone()),
        }
    }
    let fail = |missing: &[String], unreadable: &[Unreadable]| {
        let mut message = format!(
            "cannot cache {}: {} of {} listed images could not be used (looked in {})",
            table.source.display(),
            missing.len() + unreadable.len(),
            table.records.len(),
            index.root().display()
        );
        let _ = write_skipped(&mut message, missing, unreadable);
        message.push_str("\nfix the image folder, or allow missing images (--allow-missing) to cache the rest");
        Error::Invalid(message)
    };
    if !missing.is_empty() && !options.allow_missing {
        return Err(fail(&missing, &[]));
    }
    if found.is_empty() {
        return Err(fail(&missing, &[]));
    }
    let key = input_key(&table_key(table, size), &found);

    if path.exists() && !options.force {
        match Cache::open(&path) {
            Ok(cache) if cache.key == key => {
                let unreadable: Vec<Unreadable> = found
                    .iter()
                    .filter(|(name, _)| cache.index_of(name).is_none())
                    .map(|(name, file)| Unreadable {
                        name: (*name).to_owned(),
                        message: format!("{}: could not be decoded when this cache was built", file.display()),
                    })
                    .collect();
                if !unreadable.is_empty() && !options.allow_missing {
                    return Err(fail(&missing, &unreadable));
                }
                let report = CacheReport {
                    path,
                    listed: table.records.len(),
                    cached: cache.len(),
                    missing,
                    unreadable,
                    reused: true,
                    seconds: started.elapsed().as_secs_f64(),
                };
                return Ok((cache, report));
            }
            Ok(_) => tracing::info!("{} was built from other images; rebuilding", path.display()),
            Err(e) => tracing::warn!("rebuilding unusable cache: {e}"),
        }
    }

    let written = match options.threads {
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {threads} decoder threads: {e}")))?
            .install(|| write_cache(&path, &found, size, &key, options)),
        None => write_cache(&path, &found, size, &key, options),
    }?;
    if !written.unreadable.is_empty() && !options.allow_missing {
        return Err(fail(&missing, &written.unreadable));
    }
    let cache = Cache::open(&path)?;
    let report = CacheReport {
        path,
        listed: table.records.len(),
        cached: cache.len(),
        missing,
        unreadable: written.unreadable,
        reused: false,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((cache, report))
}

pub(super) struct Written {
    unreadable: Vec<Unreadable>,
}

/// Removes the temp file unless the build got as far as renaming it.
pub(super) struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Decodes `found` into a temp file next to `path` and renames it into place; writes nothing at
/// `path` when images are unreadable and `allow_missing` is off.
pub(super) fn write_cache(
    path: &Path,
    found: &[(&str, &Path)],
    size: u32,
    key: &[u8; 32],
    options: &BuildOptions,
) -> Result<Written> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    remove_dead_temp_files(dir, file_name);
    let temp = TempFile(dir.join(format!(".{file_name}.tmp-{}", std::process::id())));
    let io = |e: std::io::Error| Error::io(&temp.0, e);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp.0)
        .map_err(io)?;
    let side = size as usize * size as usize;
    let full_len = HEADER_LEN + found.len() * side;
    reserve(&file, full_len as u64).map_err(|e| {
        let message = format!(
            "cannot reserve {:.1} MB for the image cache: {e}; free disk space or use another --data-dir",
            full_len as f64 / 1e6
        );
        Error::io(path, std::io::Error::new(e.kind(), message))
    })?;
    // SAFETY: the temp file is ours alone (process-unique name) until it is renamed.
    let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(io)?;

    let done = AtomicUsize::new(0);
    let total = found.len();
    // Each image owns its slot, so threads write without locks and the bytes do not depend on
    // scheduling; (sum, sum of squares) are exact integers for the same reason.
    let results: Vec<Result<(u64, u64)>> = map[HEADER_LEN..]
        .par_chunks_mut(side)
        .zip(found.par_iter())
        .map_init(SquareResizer::new, |resizer, (slot, (_, file))| {
            let result = images::load_gray(file)
                .and_then(|gray| resizer.resize_into(&gray, size, slot))
                .map(|()| pixel_sums(slot));
            let now = done.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(progress) = &options.progress {
                progress(now, total);
            }
            result
        })
        .collect();

    let mut unreadable = Vec::new();
    let mut ids: Vec<&str> = Vec::with_capacity(found.len());
    let (mut sum, mut sum_sq) = (0u128, 0u128);
    for (i, ((name, _), result)) in found.iter().zip(results).enumerate() {
        match result {
            Ok((s, sq)) => {
                // Close the gaps left by unreadable images.
                let kept = ids.len();
                if kept != i {
                    let from = HEADER_LEN + i * side;
                    map.copy_within(from..from + side, HEADER_LEN + kept * side);
                }
                ids.push(name);
                sum += u128::from(s);
                sum_sq += u128::from(sq);
            }
            Err(e) => unreadable.push(Unreadable {
                name: (*name).to_owned(),
                message: e.to_string(),
            }),
        }
    }
    if !unreadable.is_empty() && !options.allow_missing {
        return Ok(Written { unreadable });
    }
    if ids.is_empty() {
        let mut message = "no listed image could be decoded".to_owned();
        let _ = write_skipped(&mut message, &[], &unreadable);
        return Err(Error::Invalid(message));
    }

    let pixels_end = HEADER_LEN + ids.len() * side;
    let pixel_digest: [u8; 32] = Sha256::digest(&map[HEADER_LEN..pixels_end]).into();
    let n = (ids.len() * side) as f64;
    let mean = sum as f64 / n;
    let variance = (sum_sq as f64 / n - mean * mean).max(0.0);
    let ids_block = ids.join("\n");
    let file_len = pixels_end + ids_block.len();

    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&size.to_le_bytes());
    header[16..24].copy_from_slice(&(ids.len() as u64).to_le_bytes());
    header[24..32].copy_from_slice(&(ids_block.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(mean / 255.0).to_le_bytes());
    header[40..48].copy_from_slice(&(variance.sqrt() / 255.0).to_le_bytes());
    header[48..80].copy_from_slice(key);
    header[80..112].copy_from_slice(&pixel_digest);
    header[112..120].copy_from_slice(&(file_len as u64).to_le_bytes());
    let digest = meta_digest(&header[..META_CHECKED_LEN], ids_block.as_bytes());
    header[120..152].copy_from_slice(&digest);

    map.flush().map_err(io)?;
    drop(map);
    file.set_len(pixels_end as u64).map_err(io)?;
    file.seek(SeekFrom::Start(pixels_end as u64)).map_err(io)?;
    file.write_all(ids_block.as_bytes()).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&header).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temp.0, path).map_err(|e| Error::io(path, e))?;
    // Make the rename itself durable; not all platforms can open a folder, hence no error.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(Written { unreadable })
}

/// Sizes the temp file and, where the OS can, allocates its blocks now: the pixels are written
/// through a memory map, and a write to an unallocated page of a full disk is a SIGBUS that
/// kills the whole process (the dashboard with it) instead of an error this build can report.
pub(super) fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(len) else {
            return Err(std::io::Error::other("cache file too large for this platform"));
        };
        // SAFETY: the descriptor is open for writing for the duration of the call.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => {}
            // File systems that cannot allocate ahead: fall back to the sparse file.
            libc::EOPNOTSUPP | libc::EINVAL => {}
            code => return Err(std::io::Error::from_raw_os_error(code)),
        }
    }
    Ok(())
}

/// Removes temp files of this cache left by builds whose process is gone (killed mid-build); a
/// full-size cache's temp file is gigabytes. A live process's temp file is left alone (two
/// `cxr8 train` processes may share a folder).
pub(super) fn remove_dead_temp_files(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this id exists; assumed alive where that cannot be checked.
pub(super) fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

pub(super) fn pixel_sums(pixels: &[u8]) -> (u64, u64) {
    pixels.iter().fold((0u64, 0u64), |(s, sq), &p| {
        let p = u64::from(p);
        (s + p, sq + p * p)
    })
}
