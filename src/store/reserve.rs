//! The run store's disk reserve: a file of really allocated blocks beside the database
//! (`cxr8.sqlite-reserve`). When a write finds the disk full the store gives it back, so that
//! the records saying what failed (a run's `failed` status and its event) still fit; once there
//! is room again it is taken back.
//!
//! Between giving it back and taking it again the store is *short of space*: it refuses writes
//! that add data (see `Store::room_for_more`), which would only use up the space meant for those
//! records.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Enough for hundreds of status changes and events (each is a transaction of a few 4 KiB WAL
/// pages), small beside any disk.
pub const RESERVE_BYTES: u64 = 2 << 20;

/// Free space needed beside the reserve before it is taken back after the disk filled: taking
/// it as soon as its own size is free would fill the disk again with the next write.
const HEADROOM_BYTES: u64 = 4 << 20;

/// How often a store that has no reserve (it could not be made when the store opened) tries
/// again, on a write. Trying costs a `statvfs` and a `posix_fallocate`.
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// The reserve file's name beside `cxr8.sqlite`.
pub const RESERVE_FILE: &str = "cxr8.sqlite-reserve";

pub struct Reserve {
    /// `None` for an in-memory store: no disk to fill.
    path: Option<PathBuf>,
    state: Mutex<State>,
}

struct State {
    /// The file is there with its blocks allocated.
    held: bool,
    /// Given back after a full disk and not yet taken again.
    short: bool,
    last_try: Option<Instant>,
    /// Free bytes needed to take the reserve back while short (tests set it to pretend the
    /// disk is still full, or empty).
    free_to_retake: u64,
}

impl Reserve {
    /// The reserve at `path`, made now if it is missing. A reserve that cannot be made is a
    /// warning, not an error: the store works without it, and tries again later.
    pub fn open(path: PathBuf) -> Reserve {
        let held = match allocate(&path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "cannot keep {} MiB of disk in reserve at {}: {e}; if the disk fills up, a run's failure may \
                     not be recorded (cxr8 tries again later)",
                    RESERVE_BYTES >> 20,
                    path.display()
                );
                false
            }
        };
        Reserve {
            path: Some(path),
            state: Mutex::new(State {
                held,
                short: false,
                last_try: Some(Instant::now()),
                free_to_retake: RESERVE_BYTES + HEADROOM_BYTES,
            }),
        }
    }

    /// No reserve (an in-memory store).
    pub fn none() -> Reserve {
        Reserve {
            path: None,
            state: Mutex::new(State {
                held: false,
                short: false,
                last_try: None,
                free_to_retake: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A write found the disk full: frees the reserve's blocks for the records that follow and
    /// marks the store short of space.
    pub fn give_back(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let mut state = self.state();
        if state.held {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::warn!(
                    "the disk under the run store is full; freed its {} MiB reserve ({}) to record what failed",
                    RESERVE_BYTES >> 20,
                    path.display()
                ),
                Err(e) => tracing::error!(
                    "the disk under the run store is full, and its reserve {} could not be freed: {e}",
                    path.display()
                ),
            }
        }
        state.held = false;
        state.short = true;
    }

    /// Whether the store may add data: always, unless it is short of space and the disk still
    /// has no room for the reserve and some headroom. Takes the reserve back when it can (while
    /// short: on every call; a reserve that could not be made: at most once a minute).
    pub fn room_for_more(&self) -> bool {
        let Some(path) = &self.path else {
            return true;
        };
        let mut state = self.state();
        if state.held {
            return true;
        }
        if !state.short {
            if state.last_try.is_some_and(|at| at.elapsed() < RETRY_EVERY) {
                return true;
            }
            state.last_try = Some(Instant::now());
            state.held = allocate(path).is_ok();
            return true;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        if !free_bytes(dir).is_ok_and(|free| free >= state.free_to_retake) {
            return false;
        }
        match allocate(path) {
            Ok(()) => {
                tracing::info!("there is room again under the run store; its reserve is back");
                state.held = true;
                state.short = false;
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the store is short of space (its reserve given back, not yet taken again).
    pub fn is_short(&self) -> bool {
        self.state().short
    }

    #[cfg(test)]
    pub fn require_free_to_retake(&self, bytes: u64) {
        self.state().free_to_retake = bytes;
    }
}

/// Makes `path` a file of `RESERVE_BYTES` with its blocks allocated (also on tmpfs, where a
/// sparse file would hold nothing). An existing complete reserve is kept as it is; a failed
/// attempt leaves no file behind.
fn allocate(path: &Path) -> std::io::Result<()> {
    let result = (|| {
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        fallocate(&file, RESERVE_BYTES)?;
        file.sync_all()
    })();
    if result.is_err() && path.is_file() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn fallocate(file: &File, len: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| std::io::Error::other("reserve too large"))?;
    // SAFETY: the descriptor is open for writing for the duration of the call.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        // A file system that cannot allocate ahead: write the blocks instead.
        libc::EOPNOTSUPP | libc::EINVAL => {
            use std::io::Write;
            let mut writer = file;
            let block = vec![0u8; 64 << 10];
            for _ in 0..(len as u64).div_ceil(block.len() as u64) {
                writer.write_all(&block)?;
            }
            Ok(())
        }
        code => Err(std::io::Error::from_raw_os_error(code)),
    }
}

/// Bytes an unprivileged writer can still use on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let c_path = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: statvfs only writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The file is there, full size, with its blocks allocated (not sparse).
    fn allocated(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.len() == RESERVE_BYTES && m.blocks() * 512 >= RESERVE_BYTES)
    }

    #[test]
    fn given_back_it_is_taken_again_only_with_room_to_spare() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESERVE_FILE);
        let reserve = Reserve::open(path.clone());
        assert!(allocated(&path), "made when opened");
        assert!(reserve.room_for_more() && !reserve.is_short());

        reserve.give_back();
        assert!(!path.exists(), "its blocks are freed");
        assert!(reserve.is_short());
        reserve.require_free_to_retake(u64::MAX);
        assert!(!reserve.room_for_more(), "no room while the disk stays full");
        assert!(!path.exists() && reserve.is_short());

        reserve.require_free_to_retake(0);
        assert!(reserve.room_for_more(), "room again");
        assert!(allocated(&path) && !reserve.is_short());
    }

    #[test]
    fn one_that_cannot_be_made_is_only_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESERVE_FILE);
        // A folder in its place: the file cannot be created.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        let reserve = Reserve::open(path.clone());
        assert!(
            reserve.room_for_more() && !reserve.is_short(),
            "writes go on without it"
        );
        assert!(path.join("keep").exists(), "nothing of the user's is removed");
    }

    #[test]
    fn an_existing_reserve_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESERVE_FILE);
        drop(Reserve::open(path.clone()));
        let inode = std::fs::metadata(&path).unwrap().ino();
        drop(Reserve::open(path.clone()));
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert!(allocated(&path));
    }

    #[test]
    fn free_space_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
