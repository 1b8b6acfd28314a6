//! The data-folder lock (`<data_dir>/cxr8.lock`): one `cxr8 serve` per data folder, and no
//! `cxr8 train` beside it. The lock is an OS file lock, so it dies with its process: a lock file
//! left by a killed process never blocks. The file's text (`serve <pid>`) only names the holder
//! in the refusal message.
//!
//! Why `train` may not run beside `serve` on the same folder: the server trains one job at a time
//! on purpose (one GPU), and a server starting while a CLI run trains would mark that run
//! `interrupted`. Several `cxr8 train` processes may share a folder (shared lock), as before.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside the data folder.
pub const LOCK_FILE: &str = "cxr8.lock";

/// Which command holds (or wants) the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// `cxr8 serve`: exclusive.
    Serve,
    /// `cxr8 train`: shared with other trainers.
    Train,
}

impl Holder {
    fn as_str(self) -> &'static str {
        match self {
            Holder::Serve => "serve",
            Holder::Train => "train",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", busy_message(*.wanted, *.holder, *.pid, .data_dir))]
    Busy {
        wanted: Holder,
        /// What the lock file says holds it (a trainer when unreadable: only shared holders can
        /// leave it half-written).
        holder: Holder,
        pid: Option<u32>,
        data_dir: PathBuf,
    },
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn busy_message(wanted: Holder, holder: Holder, pid: Option<u32>, data_dir: &Path) -> String {
    let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let dir = data_dir.display();
    match (holder, wanted) {
        (Holder::Serve, Holder::Serve) => {
            format!("another cxr8{pid} is serving {dir}; stop it or use --data-dir")
        }
        (Holder::Serve, Holder::Train) => {
            format!("another cxr8{pid} is serving {dir}; start the run from its dashboard, stop it, or use --data-dir")
        }
        (Holder::Train, _) => {
            format!("a cxr8 train{pid} is writing to {dir}; wait for it to finish, stop it, or use --data-dir")
        }
    }
}

/// Held for as long as the process uses the data folder; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock for `holder`, or says who has it. Creates the folder if needed.
    pub fn acquire(data_dir: &Path, holder: Holder) -> Result<DataDirLock, Error> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let locked = match holder {
            Holder::Serve => file.try_lock(),
            Holder::Train => file.try_lock_shared(),
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let (holder_now, pid) = read_holder(&mut file);
                return Err(Error::Busy {
                    wanted: holder,
                    holder: holder_now,
                    pid,
                    data_dir: data_dir.to_path_buf(),
                });
            }
            // A file system without locks (some network mounts): work unguarded, but say so.
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(path = %path.display(), "file locks are not supported here; not guarding the data folder");
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let text = format!("{} {}\n", holder.as_str(), std::process::id());
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Reads `serve 1234` from the lock file; unreadable text counts as a trainer of unknown pid.
fn read_holder(file: &mut File) -> (Holder, Option<u32>) {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text));
    let mut words = text.split_whitespace();
    let holder = match words.next() {
        Some("serve") => Holder::Serve,
        _ => Holder::Train,
    };
    (holder, words.next().and_then(|p| p.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_many_trainers_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = DataDirLock::acquire(&data, Holder::Serve).unwrap();
        let pid = std::process::id();
        let second = DataDirLock::acquire(&data, Holder::Serve).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!(
                "another cxr8 (pid {pid}) is serving {}; stop it or use --data-dir",
                data.display()
            )
        );
        let train = DataDirLock::acquire(&data, Holder::Train).unwrap_err().to_string();
        assert!(train.contains("is serving") && train.contains("dashboard"), "{train}");
        drop(server);

        let first = DataDirLock::acquire(&data, Holder::Train).unwrap();
        let _second = DataDirLock::acquire(&data, Holder::Train).unwrap();
        let serve = DataDirLock::acquire(&data, Holder::Serve).unwrap_err().to_string();
        assert!(
            serve.contains(&format!("a cxr8 train (pid {pid}) is writing to")),
            "{serve}"
        );
        drop(first);
        drop(_second);
        DataDirLock::acquire(&data, Holder::Serve).unwrap();
    }

    #[test]
    fn a_leftover_lock_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "serve 999999\n").unwrap();
        DataDirLock::acquire(dir.path(), Holder::Serve).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("serve {}\n", std::process::id()));
    }
}
