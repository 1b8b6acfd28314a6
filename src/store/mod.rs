//! The run store: one SQLite database (WAL) under the data dir holding runs, per-epoch metrics
//! and run events. Knows nothing about Burn or HTTP: metrics arrive as serde JSON values.
//!
//! Every write is one short transaction, so a crash leaves either the whole epoch row or none.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use schema::{SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_VERSION, SET_BEST_HEADLINES};

mod datasets;
mod estimates;
mod reserve;
mod rows;
mod runs;
pub mod scalars;
mod schema;
mod steps;

pub use estimates::StoredTiming;
pub use reserve::{RESERVE_BYTES, RESERVE_FILE};
pub use rows::{DatasetRow, EpochRow, EventRow, NewRun, Run, RunStatus, SplitFiles};
pub use steps::StepPoint;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run store {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the data folder {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no run with id '{0}'")]
    UnknownRun(String),
    #[error("a data set named '{0}' already exists; pick another name")]
    DatasetExists(String),
    #[error("no data set named '{0}'")]
    UnknownDataset(String),
    #[error("run store {}: schema version {found} is newer than this cxr8 understands ({supported}); upgrade cxr8", path.display())]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    /// The disk under the store is full (or was, and has no room yet): nothing of this write
    /// was stored. `source` is SQLite's error when a write hit it; none when it was refused.
    #[error("{}: no space is left under {}; free disk space there, then try again", DISK_FULL, dir.display())]
    DiskFull {
        dir: PathBuf,
        #[source]
        source: Option<rusqlite::Error>,
    },
}

/// How every [`Error::DiskFull`] message begins (the web layer recognises it in a refused
/// submission, which reaches it as text).
pub const DISK_FULL: &str = "the run store's disk is full";

/// Events that record a change of a run's state: still written while the store is short of
/// space, since they say why a run stopped.
const RUN_STATE_EVENTS: [&str; 2] = ["status", "done"];

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Disk kept free for recording failures when the disk fills (see `reserve.rs`).
    reserve: reserve::Reserve,
    /// The runs list's rows as last read, with the `runs_version` they were read at.
    list_cache: Mutex<Option<(i64, std::sync::Arc<Vec<Run>>)>>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/cxr8.sqlite`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let path = dir.join("cxr8.sqlite");
        let conn = Connection::open(&path).map_err(|source| Error::Sqlite {
            path: path.clone(),
            source,
        })?;
        let store = Store::init(conn, path)?;
        Ok(Store {
            reserve: reserve::Reserve::open(dir.join(RESERVE_FILE)),
            ..store
        })
    }

    /// A private in-memory store, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| Error::Sqlite {
            path: path.clone(),
            source,
        })?;
        Store::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Store> {
        let wrap = |source: rusqlite::Error| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                return Error::DiskFull {
                    dir: data_dir_of(&path),
                    source: Some(source),
                };
            }
            Error::Sqlite {
                path: path.clone(),
                source,
            }
        };
        // WAL: readers (the web pages) never block the writer (the training worker).
        conn.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(wrap)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(wrap)?;
        if version > SCHEMA_VERSION {
            return Err(Error::TooNew {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"))
                .map_err(wrap)?;
        }
        if version < 2 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V2} PRAGMA user_version = 2; COMMIT;"))
                .map_err(wrap)?;
        }
        if version < 3 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V3} PRAGMA user_version = 3; COMMIT;"))
                .map_err(wrap)?;
        }
        if version < 4 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V4} PRAGMA user_version = 4; COMMIT;"))
                .map_err(wrap)?;
        }
        // Every headline column is (re)filled from the best epochs once, by the last step: the
        // assignments name columns that only exist from version 5 on.
        if version < 5 {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V5} UPDATE runs SET {SET_BEST_HEADLINES}; PRAGMA user_version = 5; COMMIT;"
            ))
            .map_err(wrap)?;
        }
        if version < 6 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V6} PRAGMA user_version = 6; COMMIT;"))
                .map_err(wrap)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            reserve: reserve::Reserve::none(),
            list_cache: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns SQLite's error into ours. A full disk gives the reserve back, so that the writes
    /// recording the failure fit (the failed write itself stays failed).
    fn wrap(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| {
            if self.is_disk_full(&source) {
                self.reserve.give_back();
                return self.disk_full(Some(source));
            }
            Error::Sqlite {
                path: self.path.clone(),
                source,
            }
        }
    }

    /// SQLITE_FULL is SQLite's word for ENOSPC on a write (and for a database at its
    /// `max_page_count`); other failed writes to a disk with no block left count too.
    fn is_disk_full(&self, e: &rusqlite::Error) -> bool {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => true,
            // `exists`: not an in-memory store.
            Some(rusqlite::ErrorCode::SystemIoFailure) if self.path.exists() => {
                reserve::free_bytes(&data_dir_of(&self.path)).is_ok_and(|free| free < NO_ROOM_BYTES)
            }
            _ => false,
        }
    }

    fn disk_full(&self, source: Option<rusqlite::Error>) -> Error {
        Error::DiskFull {
            dir: data_dir_of(&self.path),
            source,
        }
    }

    /// Refuses a write that adds data while the store is short of space (its reserve was given
    /// back to record a failure) and the disk still has no room: that space is kept for the
    /// records of what ends or stops runs, which skip this check. Also where the reserve is
    /// taken back once there is room.
    fn room_for_more(&self) -> Result<()> {
        if self.reserve.room_for_more() {
            Ok(())
        } else {
            Err(self.disk_full(None))
        }
    }

    /// Whether a full disk has the store refusing new data until there is room (see
    /// [`Error::DiskFull`]).
    pub fn is_short_of_space(&self) -> bool {
        self.reserve.is_short()
    }

    /// SQLite's own consistency check; "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.wrap())
    }
}

/// The folder holding the store's database file (what a user frees space in).
fn data_dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// Below this many free bytes an I/O error on a write is taken for a full disk.
const NO_ROOM_BYTES: u64 = 64 << 10;

/// UTC, RFC 3339 with milliseconds: sorts as text in time order.
pub fn now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(&format).expect("valid format")
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use serde_json::json;

    fn store_with_run() -> (Store, String) {
        let store = Store::open_in_memory().unwrap();
        let config = json!({"model": "resnet-18"});
        let id = store
            .create_run(&NewRun {
                name: "first",
                config: &config,
                dataset: "demo",
                model: "resnet-18",
                image_size: 64,
                epochs_planned: 3,
                tags: &["a".into()],
            })
            .unwrap();
        (store, id)
    }

    #[test]
    fn runs_made_in_the_same_second_get_distinct_ids() {
        // 3,000 ids from 65,536 per second collide dozens of times; every insert must still work.
        let store = Store::open_in_memory().unwrap();
        let config = json!({});
        let new = NewRun {
            name: "many",
            config: &config,
            dataset: "demo",
            model: "simple-cnn",
            image_size: 64,
            epochs_planned: 1,
            tags: &[],
        };
        let ids: std::collections::HashSet<String> = (0..3000).map(|_| store.create_run(&new).unwrap()).collect();
        assert_eq!(ids.len(), 3000);
        assert_eq!(store.runs().unwrap().len(), 3000);
    }

    #[test]
    fn run_life_cycle() {
        let (store, id) = store_with_run();
        let run = store.run(&id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(run.config["model"], "resnet-18");
        assert_eq!(run.tags, ["a"]);
        store.set_status(&id, RunStatus::Running, None).unwrap();
        assert!(store.run(&id).unwrap().unwrap().started_at.is_some());
        store
            .record_epoch(&id, 1, &json!({"val_loss": 0.5}), Some((1, "val_mean_auroc", 0.7)))
            .unwrap();
        store.record_epoch(&id, 2, &json!({"val_loss": 0.4}), None).unwrap();
        // A resumed run re-records epoch 2: replaced, not duplicated.
        store
            .record_epoch(&id, 2, &json!({"val_loss": 0.3}), Some((2, "val_mean_auroc", 0.8)))
            .unwrap();
        let epochs = store.epochs(&id).unwrap();
        assert_eq!(epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(epochs[1].metrics["val_loss"], 0.3);
        let run = store.run(&id).unwrap().unwrap();
        assert_eq!(
            (run.epochs_done, run.best_epoch, run.best_metric),
            (2, Some(2), Some(0.8))
        );
        store
            .set_status(&id, RunStatus::Failed, Some("loss became NaN"))
            .unwrap();
        let run = store.run(&id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.error.as_deref(), Some("loss became NaN"));
        assert!(run.finished_at.is_some());
    }

    #[test]
    fn events_resume_after_a_sequence_number() {
        let (store, id) = store_with_run();
        let seqs: Vec<i64> = (0..5)
            .map(|i| store.append_event(&id, "epoch", &json!({"epoch": i})).unwrap())
            .collect();
        let rest = store.events_after(&id, seqs[2]).unwrap();
        assert_eq!(
            rest.iter()
                .map(|e| e.payload["epoch"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(store.events_after(&id, seqs[4]).unwrap().is_empty());
    }

    #[test]
    fn running_runs_become_interrupted_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = Store::open(dir.path()).unwrap();
            let config = json!({});
            let id = store
                .create_run(&NewRun {
                    name: "x",
                    config: &config,
                    dataset: "d",
                    model: "m",
                    image_size: 64,
                    epochs_planned: 1,
                    tags: &[],
                })
                .unwrap();
            store.set_status(&id, RunStatus::Running, None).unwrap();
            store.record_epoch(&id, 1, &json!({"val_loss": 1.0}), None).unwrap();
            id
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.mark_interrupted().unwrap(), std::slice::from_ref(&id));
        let run = store.run(&id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Interrupted);
        assert_eq!(store.epochs(&id).unwrap().len(), 1, "committed epochs survive");
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn unknown_runs_and_deletion() {
        let (store, id) = store_with_run();
        store.append_event(&id, "status", &json!({})).unwrap();
        store.delete_run(&id).unwrap();
        assert!(store.run(&id).unwrap().is_none());
        assert!(store.events_after(&id, 0).unwrap().is_empty(), "events go with the run");
        assert!(matches!(store.delete_run(&id), Err(Error::UnknownRun(_))));
        assert!(matches!(
            store.set_status("nope", RunStatus::Done, None),
            Err(Error::UnknownRun(_))
        ));
    }

    #[test]
    fn datasets_are_registered_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .add_dataset(
                    "nih",
                    "/d/Data_Entry_2017.csv",
                    "/d/images",
                    None,
                    &json!({"images": 5}),
                )
                .unwrap();
            let again = store.add_dataset("nih", "/other.csv", "/other", None, &json!({}));
            assert!(matches!(again, Err(Error::DatasetExists(name)) if name == "nih"));
            store.set_dataset_summary("nih", &json!({"images": 6})).unwrap();
            assert!(matches!(
                store.set_dataset_summary("none", &json!({})),
                Err(Error::UnknownDataset(_))
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.datasets().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].label_file, "/d/Data_Entry_2017.csv");
        assert_eq!(all[0].summary, json!({"images": 6}));
        assert_eq!(store.dataset("nih").unwrap().unwrap().image_dir, "/d/images");
        store.delete_dataset("nih").unwrap();
        assert!(store.dataset("nih").unwrap().is_none());
        assert!(matches!(store.delete_dataset("nih"), Err(Error::UnknownDataset(_))));
    }

    #[test]
    fn the_best_epochs_headline_numbers_follow_the_best_epoch() {
        let (store, id) = store_with_run();
        let headlines = |store: &Store| {
            let run = store.run(&id).unwrap().unwrap();
            (run.best_val_mean_auroc, run.best_val_accuracy)
        };
        store.record_epoch(&id, 1, &json!({"val_loss": 0.9}), None).unwrap();
        assert_eq!(headlines(&store), (None, None), "no best epoch yet");
        store
            .record_epoch(
                &id,
                1,
                &json!({"val_mean_auroc": 0.7, "val_accuracy": 1}),
                Some((1, "val_mean_auroc", 0.7)),
            )
            .unwrap();
        assert_eq!(headlines(&store), (Some(0.7), Some(1.0)));
        // A worse epoch leaves the best where it was.
        store
            .record_epoch(
                &id,
                2,
                &json!({"val_mean_auroc": 0.6, "val_accuracy": 0.5}),
                Some((1, "val_mean_auroc", 0.7)),
            )
            .unwrap();
        assert_eq!(headlines(&store), (Some(0.7), Some(1.0)));
        // A resumed run re-records the best epoch without naming a new best.
        store
            .record_epoch(&id, 1, &json!({"val_mean_auroc": 0.8, "val_accuracy": "n/a"}), None)
            .unwrap();
        assert_eq!(
            headlines(&store),
            (Some(0.8), None),
            "a value that is not a number is no number"
        );
        store
            .record_epoch(
                &id,
                3,
                &json!({"val_mean_auroc": 0.9, "val_accuracy": 0.25, "val_balanced_accuracy": 0.4}),
                Some((3, "val_mean_auroc", 0.9)),
            )
            .unwrap();
        assert_eq!(headlines(&store), (Some(0.9), Some(0.25)));
        let run = store.run(&id).unwrap().unwrap();
        assert_eq!(
            run.best_val_balanced_accuracy,
            Some(0.4),
            "single-label headline kept too"
        );
        let listed = store.runs_for_list().unwrap();
        assert_eq!(
            listed[0].best_val_balanced_accuracy,
            Some(0.4),
            "and read from the list's index"
        );
    }

    #[test]
    fn a_version_2_store_gains_the_headline_numbers_of_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cxr8.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!("{SCHEMA_V1} {SCHEMA_V2} PRAGMA user_version = 2;"))
                .unwrap();
            let run = |id: &str, best: Option<u32>| {
                conn.execute(
                    "INSERT INTO runs (id, name, status, config, dataset, model, image_size, epochs_planned, best_epoch, created_at) \
                     VALUES (?1, ?1, 'done', '{}', 'demo', 'm', 64, 2, ?2, ?1)",
                    params![id, best],
                )
                .unwrap();
            };
            let epoch = |id: &str, epoch: u32, metrics: &str| {
                conn.execute(
                    "INSERT INTO epochs (run_id, epoch, metrics, committed_at) VALUES (?1, ?2, ?3, '')",
                    params![id, epoch, metrics],
                )
                .unwrap();
            };
            run("a", Some(2));
            epoch("a", 1, r#"{"val_mean_auroc": 0.9, "val_accuracy": 0.9}"#);
            epoch(
                "a",
                2,
                r#"{"val_mean_auroc": 0.8, "val_accuracy": 0.75, "val_balanced_accuracy": 0.5}"#,
            );
            run("no-best", None);
            epoch("no-best", 1, r#"{"val_mean_auroc": 0.5}"#);
            run("damaged", Some(1));
            epoch("damaged", 1, "{not json");
        }
        let store = Store::open(dir.path()).unwrap();
        let headlines = |id: &str| {
            let run = store.run(id).unwrap().unwrap();
            (run.best_val_mean_auroc, run.best_val_accuracy)
        };
        assert_eq!(
            headlines("a"),
            (Some(0.8), Some(0.75)),
            "the recorded best epoch's, not the highest"
        );
        assert_eq!(store.run("a").unwrap().unwrap().best_val_balanced_accuracy, Some(0.5));
        assert_eq!(headlines("no-best"), (None, None));
        assert_eq!(
            headlines("damaged"),
            (None, None),
            "a damaged row does not stop the upgrade"
        );
        assert_eq!(store.epochs("damaged").unwrap()[0].metrics, json!("{not json"));
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn the_runs_list_is_read_again_exactly_when_runs_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = json!({});
        let new = NewRun {
            name: "listed",
            config: &config,
            dataset: "demo",
            model: "simple-cnn",
            image_size: 64,
            epochs_planned: 2,
            tags: &[],
        };
        let id = store.create_run(&new).unwrap();
        let first = store.runs_for_list().unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            std::sync::Arc::ptr_eq(&first, &store.runs_for_list().unwrap()),
            "unchanged: the same rows"
        );
        store.append_event(&id, "progress", &json!({"batch": 1})).unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first, &store.runs_for_list().unwrap()),
            "events leave runs alone"
        );

        let listed = || store.runs_for_list().unwrap()[0].clone();
        store.set_status(&id, RunStatus::Running, None).unwrap();
        assert_eq!(listed().status, RunStatus::Running);
        store
            .record_epoch(
                &id,
                1,
                &json!({"val_mean_auroc": 0.7, "val_accuracy": 0.5}),
                Some((1, "val_mean_auroc", 0.7)),
            )
            .unwrap();
        assert_eq!((listed().epochs_done, listed().best_val_mean_auroc), (1, Some(0.7)));
        store.update_meta(&id, "renamed", &["t".into()], "").unwrap();
        assert_eq!(
            (listed().name, listed().tags),
            ("renamed".to_string(), vec!["t".to_string()])
        );
        store.mark_interrupted().unwrap();
        assert_eq!(listed().status, RunStatus::Interrupted);
        // Another process writing the same store (the triggers count its changes too).
        Connection::open(dir.path().join("cxr8.sqlite"))
            .unwrap()
            .execute("UPDATE runs SET name = 'renamed elsewhere'", [])
            .unwrap();
        assert_eq!(listed().name, "renamed elsewhere");
        store.delete_run(&id).unwrap();
        assert!(store.runs_for_list().unwrap().is_empty());
        store.create_run(&new).unwrap();
        assert_eq!(store.runs_for_list().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("cxr8.sqlite")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let message = Store::open(dir.path()).err().unwrap().to_string();
        assert!(message.contains("upgrade cxr8"), "{message}");
    }

    /// The reserve file is there, full size, with its blocks allocated (not sparse).
    fn reserve_held(dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir.join(RESERVE_FILE))
            .is_ok_and(|m| m.len() == RESERVE_BYTES && m.blocks() * 512 >= RESERVE_BYTES)
    }

    /// A queued run with an empty config (shared by the store's test modules).
    pub(super) fn new_run(store: &Store) -> Result<String> {
        store.create_run(&NewRun {
            name: "r",
            config: &json!({}),
            dataset: "demo",
            model: "m",
            image_size: 64,
            epochs_planned: 3,
            tags: &[],
        })
    }

    /// Caps the database at its current size, so that the next write that needs a page fails
    /// with SQLITE_FULL, as on a full disk.
    fn cap_pages(store: &Store, extra: i64) {
        let conn = store.conn();
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0)).unwrap();
        conn.pragma_update(None, "max_page_count", pages + extra).unwrap();
    }

    #[test]
    fn a_full_disk_gives_back_the_reserve_so_the_failure_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(reserve_held(dir.path()), "made when the store opens");
        let id = new_run(&store).unwrap();
        store.set_status(&id, RunStatus::Running, None).unwrap();
        store.record_epoch(&id, 1, &json!({"val_loss": 0.5}), None).unwrap();
        // As if the disk stays full after the reserve is freed.
        store.reserve.require_free_to_retake(u64::MAX);
        cap_pages(&store, 0);

        let big = json!({ "val_loss": 0.4, "notes": "x".repeat(64 << 10) });
        let error = store.record_epoch(&id, 2, &big, None).unwrap_err();
        assert!(matches!(&error, Error::DiskFull { source: Some(_), .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(DISK_FULL) && message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(!dir.path().join(RESERVE_FILE).exists(), "the reserve is freed");
        assert!(store.is_short_of_space());
        assert_eq!(store.epochs(&id).unwrap().len(), 1, "the failed epoch is not stored");

        // SQLite would have room now; the store keeps it for recording failures.
        cap_pages(&store, 1000);
        assert!(matches!(new_run(&store), Err(Error::DiskFull { source: None, .. })));
        assert!(matches!(
            store.record_epoch(&id, 2, &json!({"val_loss": 0.4}), None),
            Err(Error::DiskFull { .. })
        ));
        assert!(matches!(
            store.append_event(&id, "progress", &json!({})),
            Err(Error::DiskFull { .. })
        ));
        assert!(matches!(
            store.set_status(&id, RunStatus::Queued, None),
            Err(Error::DiskFull { .. })
        ));
        assert!(matches!(
            store.add_dataset("nih", "/l.csv", "/i", None, &json!({})),
            Err(Error::DiskFull { .. })
        ));
        store.set_status(&id, RunStatus::Failed, Some("disk full")).unwrap();
        store.append_event(&id, "done", &json!({"status": "failed"})).unwrap();
        let run = store.run(&id).unwrap().unwrap();
        assert_eq!(
            (run.status, run.error.as_deref()),
            (RunStatus::Failed, Some("disk full"))
        );
        assert_eq!(store.runs().unwrap().len(), 1, "nothing half-stored");

        // Room again: the reserve is taken back and writes go on.
        store.reserve.require_free_to_retake(0);
        store.set_status(&id, RunStatus::Queued, None).unwrap();
        assert!(reserve_held(dir.path()) && !store.is_short_of_space());
        store.record_epoch(&id, 2, &json!({"val_loss": 0.4}), None).unwrap();
        new_run(&store).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn the_reserve_is_made_again_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join(RESERVE_FILE)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(reserve_held(dir.path()));
        assert!(!store.is_short_of_space());
    }

    #[test]
    fn a_reserve_that_cannot_be_made_does_not_stop_the_store() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the reserve file goes: it cannot be created.
        std::fs::create_dir(dir.path().join(RESERVE_FILE)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!reserve_held(dir.path()));
        let id = new_run(&store).unwrap();
        store.record_epoch(&id, 1, &json!({"val_loss": 0.5}), None).unwrap();
        assert_eq!(store.epochs(&id).unwrap().len(), 1);
    }

    #[test]
    fn an_in_memory_store_at_its_size_limit_reports_a_full_disk() {
        let store = Store::open_in_memory().unwrap();
        let id = new_run(&store).unwrap();
        cap_pages(&store, 0);
        let big = json!({ "notes": "x".repeat(64 << 10) });
        assert!(matches!(
            store.record_epoch(&id, 1, &big, None),
            Err(Error::DiskFull { .. })
        ));
    }
}
