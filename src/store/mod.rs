//! The run store: one SQLite database (WAL) under the data dir holding runs, per-epoch metrics
//! and run events. Knows nothing about Burn or HTTP: metrics arrive as serde JSON values.
//!
//! Every write is one short transaction, so a crash leaves either the whole epoch row or none.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

mod reserve;
pub mod scalars;

pub use reserve::{RESERVE_BYTES, RESERVE_FILE};

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

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
    /// Was running when the process stopped (crash, kill, reboot); can be resumed.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "cancelled" => RunStatus::Cancelled,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Done | RunStatus::Failed | RunStatus::Cancelled)
    }
}

/// What is known about a run when it is submitted.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub name: &'a str,
    pub config: &'a serde_json::Value,
    pub dataset: &'a str,
    pub model: &'a str,
    pub image_size: u32,
    pub epochs_planned: u32,
    pub tags: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub status: RunStatus,
    pub config: serde_json::Value,
    pub dataset: String,
    pub model: String,
    pub image_size: u32,
    pub epochs_planned: u32,
    pub epochs_done: u32,
    pub best_epoch: Option<u32>,
    pub best_metric_name: Option<String>,
    pub best_metric: Option<f64>,
    /// The best epoch's validation mean AUROC and accuracy, kept on the run so that a list of
    /// thousands of runs never reads their epochs (see `SET_BEST_HEADLINES`).
    pub best_val_mean_auroc: Option<f64>,
    pub best_val_accuracy: Option<f64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub tags: Vec<String>,
    pub notes: String,
    pub error: Option<String>,
    pub checkpoint_dir: Option<String>,
    pub device: Option<String>,
}

/// A registered data set: where its files are, plus whatever summary its registration computed
/// (image and patient counts, label counts), kept as JSON so it can grow without migrations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub name: String,
    pub label_file: String,
    pub image_dir: String,
    pub created_at: String,
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: u32,
    pub metrics: serde_json::Value,
    pub committed_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Increases across the whole store: a client resumes a stream from the last `seq` it saw.
    pub seq: i64,
    pub run_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub at: String,
}

const SCHEMA_VERSION: i64 = 3;

const SCHEMA_V1: &str = "
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    image_size INTEGER NOT NULL,
    epochs_planned INTEGER NOT NULL,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    best_epoch INTEGER,
    best_metric_name TEXT,
    best_metric REAL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    notes TEXT NOT NULL DEFAULT '',
    error TEXT,
    checkpoint_dir TEXT,
    device TEXT
);
CREATE TABLE epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    committed_at TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX events_by_run ON events(run_id, seq);
";

/// Version 2: data sets the user registered (the demo set is built in and never stored).
const SCHEMA_V2: &str = "
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    label_file TEXT NOT NULL,
    image_dir TEXT NOT NULL,
    created_at TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}'
);
";

/// Version 3: the best epoch's headline numbers on the run (filled in for stored runs), and an
/// index in list order holding every column the runs list shows, so that the list and the API
/// stay fast with 10,000 runs: the list reads the index (~250 bytes a run) instead of rows that
/// carry ~1.5 KB of config each, and the API's pages are ranges of it.
/// `runs_version` counts changes to `runs` (kept by triggers, so writes from any connection or
/// process count, in the writer's own transaction): the list's rows are decoded again only when
/// it moves.
const SCHEMA_V3: &str = "
ALTER TABLE runs ADD COLUMN best_val_mean_auroc REAL;
ALTER TABLE runs ADD COLUMN best_val_accuracy REAL;
CREATE INDEX runs_listing ON runs(created_at, id, name, status, dataset, model, image_size, epochs_planned,
    epochs_done, best_epoch, best_metric_name, best_metric, started_at, finished_at, tags,
    best_val_mean_auroc, best_val_accuracy);
CREATE TABLE runs_version (version INTEGER NOT NULL);
INSERT INTO runs_version (version) VALUES (0);
CREATE TRIGGER runs_inserted AFTER INSERT ON runs BEGIN UPDATE runs_version SET version = version + 1; END;
CREATE TRIGGER runs_updated AFTER UPDATE ON runs BEGIN UPDATE runs_version SET version = version + 1; END;
CREATE TRIGGER runs_deleted AFTER DELETE ON runs BEGIN UPDATE runs_version SET version = version + 1; END;
";

/// `UPDATE runs SET` assignments copying the best epoch's headline numbers from its stored
/// metrics onto the run: NULL when the run has no best epoch, or the value is missing or not a
/// number (or the row is not JSON: the migration must not fail on a damaged row). The one definition used by the migration, `record_epoch` and bulk inserts, so the
/// columns cannot drift from the epoch rows.
const SET_BEST_HEADLINES: &str = "
best_val_mean_auroc = (SELECT CASE WHEN NOT json_valid(e.metrics) THEN NULL
    WHEN json_type(e.metrics, '$.val_mean_auroc') IN ('integer', 'real')
    THEN json_extract(e.metrics, '$.val_mean_auroc') END
    FROM epochs e WHERE e.run_id = runs.id AND e.epoch = runs.best_epoch),
best_val_accuracy = (SELECT CASE WHEN NOT json_valid(e.metrics) THEN NULL
    WHEN json_type(e.metrics, '$.val_accuracy') IN ('integer', 'real')
    THEN json_extract(e.metrics, '$.val_accuracy') END
    FROM epochs e WHERE e.run_id = runs.id AND e.epoch = runs.best_epoch)";

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
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V3} UPDATE runs SET {SET_BEST_HEADLINES}; PRAGMA user_version = 3; COMMIT;"
            ))
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

    /// Records a new queued run and returns its id.
    pub fn create_run(&self, new: &NewRun<'_>) -> Result<String> {
        self.room_for_more()?;
        let tags = serde_json::to_string(new.tags).expect("strings serialise");
        let config = new.config.to_string();
        let conn = self.conn();
        // Ids are short for people to read, so two runs made in the same second can draw the same
        // one; the primary key refuses the second insert and a fresh id is drawn.
        let mut attempts = 0;
        loop {
            let id = new_run_id();
            let inserted = conn.execute(
                "INSERT INTO runs (id, name, status, config, dataset, model, image_size, epochs_planned, created_at, tags)
                 VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![id, new.name, config, new.dataset, new.model, new.image_size, new.epochs_planned, now(), tags],
            );
            match inserted {
                Ok(_) => return Ok(id),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY && attempts < MAX_ID_DRAWS =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(self.wrap()(e)),
            }
        }
    }

    pub fn set_status(&self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        if matches!(status, RunStatus::Queued | RunStatus::Running) {
            self.room_for_more()?;
        }
        let conn = self.conn();
        self.write_status(&conn, id, status, error)
    }

    /// `set_status` and the event announcing it, in one transaction: a process killed between
    /// the two would leave a run that is `done` while its event log never says so, and a page
    /// waiting for that event would wait for ever.
    pub fn set_status_with_event(
        &self,
        id: &str,
        status: RunStatus,
        error: Option<&str>,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        if matches!(status, RunStatus::Queued | RunStatus::Running) {
            self.room_for_more()?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.wrap())?;
        self.write_status(&tx, id, status, error)?;
        let seq = self.insert_event(&tx, id, kind, payload)?;
        tx.commit().map_err(self.wrap())?;
        Ok(seq)
    }

    fn write_status(&self, conn: &Connection, id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        let changed = match status {
            RunStatus::Running => conn.execute(
                "UPDATE runs SET status = ?2, error = NULL, started_at = COALESCE(started_at, ?3), finished_at = NULL WHERE id = ?1",
                params![id, status.as_str(), now()],
            ),
            s if s.is_finished() || s == RunStatus::Interrupted => conn.execute(
                "UPDATE runs SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, status.as_str(), error, now()],
            ),
            _ => conn.execute("UPDATE runs SET status = ?2, error = ?3 WHERE id = ?1", params![id, status.as_str(), error]),
        }
        .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownRun(id.into()));
        }
        Ok(())
    }

    pub fn set_runtime_info(&self, id: &str, device: &str, checkpoint_dir: &str) -> Result<()> {
        self.room_for_more()?;
        self.conn()
            .execute(
                "UPDATE runs SET device = ?2, checkpoint_dir = ?3 WHERE id = ?1",
                params![id, device, checkpoint_dir],
            )
            .map_err(self.wrap())?;
        Ok(())
    }

    /// Stores one epoch's metrics (replacing a row of the same epoch, as a resumed run re-runs
    /// an epoch that was interrupted before its checkpoint) and the best-so-far, atomically.
    pub fn record_epoch(
        &self,
        id: &str,
        epoch: u32,
        metrics: &serde_json::Value,
        best: Option<(u32, &str, f64)>,
    ) -> Result<()> {
        self.room_for_more()?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.wrap())?;
        self.write_epoch(&tx, id, epoch, metrics, best)?;
        tx.commit().map_err(self.wrap())
    }

    /// `record_epoch` and the event announcing the epoch, in one transaction: a process killed
    /// between the two would leave an epoch that the run's event log never announces.
    pub fn record_epoch_with_event(
        &self,
        id: &str,
        epoch: u32,
        metrics: &serde_json::Value,
        best: Option<(u32, &str, f64)>,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        self.room_for_more()?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.wrap())?;
        self.write_epoch(&tx, id, epoch, metrics, best)?;
        let seq = self.insert_event(&tx, id, "epoch", payload)?;
        tx.commit().map_err(self.wrap())?;
        Ok(seq)
    }

    fn write_epoch(
        &self,
        conn: &Connection,
        id: &str,
        epoch: u32,
        metrics: &serde_json::Value,
        best: Option<(u32, &str, f64)>,
    ) -> Result<()> {
        conn.execute(
            "INSERT INTO epochs (run_id, epoch, metrics, committed_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, epoch) DO UPDATE SET metrics = excluded.metrics, committed_at = excluded.committed_at",
            params![id, epoch, metrics.to_string(), now()],
        )
        .map_err(self.wrap())?;
        conn.execute(
            "UPDATE runs SET epochs_done = MAX(epochs_done, ?2) WHERE id = ?1",
            params![id, epoch],
        )
        .map_err(self.wrap())?;
        if let Some((best_epoch, name, value)) = best {
            conn.execute(
                "UPDATE runs SET best_epoch = ?2, best_metric_name = ?3, best_metric = ?4 WHERE id = ?1",
                params![id, best_epoch, name, value],
            )
            .map_err(self.wrap())?;
        }
        // Also when `best` is unchanged: a resumed run may have re-recorded the best epoch itself.
        conn.execute(&format!("UPDATE runs SET {SET_BEST_HEADLINES} WHERE id = ?1"), [id])
            .map_err(self.wrap())?;
        Ok(())
    }

    /// Appends an event and returns its sequence number.
    pub fn append_event(&self, id: &str, kind: &str, payload: &serde_json::Value) -> Result<i64> {
        if !RUN_STATE_EVENTS.contains(&kind) {
            self.room_for_more()?;
        }
        let conn = self.conn();
        self.insert_event(&conn, id, kind, payload)
    }

    fn insert_event(&self, conn: &Connection, id: &str, kind: &str, payload: &serde_json::Value) -> Result<i64> {
        conn.execute(
            "INSERT INTO events (run_id, kind, payload, at) VALUES (?1, ?2, ?3, ?4)",
            params![id, kind, payload.to_string(), now()],
        )
        .map_err(self.wrap())?;
        Ok(conn.last_insert_rowid())
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>> {
        self.conn()
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()
            .map_err(self.wrap())
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<Run>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC"
            ))
            .map_err(self.wrap())?;
        let rows = stmt.query_map([], run_from_row).map_err(self.wrap())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())
    }

    pub fn epochs(&self, id: &str) -> Result<Vec<EpochRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT epoch, metrics, committed_at FROM epochs WHERE run_id = ?1 ORDER BY epoch")
            .map_err(self.wrap())?;
        let rows = stmt.query_map([id], epoch_from_row).map_err(self.wrap())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())
    }

    /// Events of a run with `seq > after`, oldest first.
    pub fn events_after(&self, id: &str, after: i64) -> Result<Vec<EventRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, run_id, kind, payload, at FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq")
            .map_err(self.wrap())?;
        let rows = stmt
            .query_map(params![id, after], |r| {
                Ok(EventRow {
                    seq: r.get(0)?,
                    run_id: r.get(1)?,
                    kind: r.get(2)?,
                    payload: parse_json(r.get::<_, String>(3)?),
                    at: r.get(4)?,
                })
            })
            .map_err(self.wrap())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())
    }

    /// At start-up: runs left `running` by a process that died are `interrupted`. Returns them.
    /// Each gets a `status` event in the same transaction, so a run page that reconnects to the
    /// new process learns of it without a reload.
    pub fn mark_interrupted(&self) -> Result<Vec<String>> {
        const MESSAGE: &str = "the process stopped while this run was training";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.wrap())?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT id FROM runs WHERE status = 'running'")
                .map_err(self.wrap())?;
            let ids = stmt
                .query_map([], |r| r.get(0))
                .map_err(self.wrap())?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.wrap())?;
            ids
        };
        let at = now();
        tx.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1, error = ?2 WHERE status = 'running'",
            params![at, MESSAGE],
        )
        .map_err(self.wrap())?;
        let payload = serde_json::json!({ "type": "interrupted", "status": "interrupted", "message": MESSAGE });
        for id in &ids {
            tx.execute(
                "INSERT INTO events (run_id, kind, payload, at) VALUES (?1, 'status', ?2, ?3)",
                params![id, payload.to_string(), at],
            )
            .map_err(self.wrap())?;
        }
        tx.commit().map_err(self.wrap())?;
        Ok(ids)
    }

    pub fn update_meta(&self, id: &str, name: &str, tags: &[String], notes: &str) -> Result<()> {
        self.room_for_more()?;
        let tags = serde_json::to_string(tags).expect("strings serialise");
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET name = ?2, tags = ?3, notes = ?4 WHERE id = ?1",
                params![id, name, tags, notes],
            )
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownRun(id.into()));
        }
        Ok(())
    }

    /// Deletes a run with its epochs and events (checkpoint files are the caller's to remove).
    pub fn delete_run(&self, id: &str) -> Result<()> {
        let changed = self
            .conn()
            .execute("DELETE FROM runs WHERE id = ?1", [id])
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownRun(id.into()));
        }
        Ok(())
    }

    /// Registers a data set under a new name (`created_at` is set here).
    pub fn add_dataset(
        &self,
        name: &str,
        label_file: &str,
        image_dir: &str,
        summary: &serde_json::Value,
    ) -> Result<()> {
        self.room_for_more()?;
        let result = self.conn().execute(
            "INSERT INTO datasets (name, label_file, image_dir, created_at, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, label_file, image_dir, now(), summary.to_string()],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::DatasetExists(name.into()))
            }
            Err(source) => Err(self.wrap()(source)),
        }
    }

    /// Replaces a registered data set's summary (e.g. once its cache is built).
    pub fn set_dataset_summary(&self, name: &str, summary: &serde_json::Value) -> Result<()> {
        self.room_for_more()?;
        let changed = self
            .conn()
            .execute(
                "UPDATE datasets SET summary = ?2 WHERE name = ?1",
                params![name, summary.to_string()],
            )
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownDataset(name.into()));
        }
        Ok(())
    }

    pub fn dataset(&self, name: &str) -> Result<Option<DatasetRow>> {
        self.conn()
            .query_row(
                "SELECT name, label_file, image_dir, created_at, summary FROM datasets WHERE name = ?1",
                [name],
                dataset_from_row,
            )
            .optional()
            .map_err(self.wrap())
    }

    /// Registered data sets, by name.
    pub fn datasets(&self) -> Result<Vec<DatasetRow>> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT name, label_file, image_dir, created_at, summary FROM datasets ORDER BY name")
            .map_err(self.wrap())?;
        let rows = statement
            .query_map([], dataset_from_row)
            .map_err(self.wrap())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.wrap())?;
        Ok(rows)
    }

    /// Forgets a data set (its files are the user's and stay where they are).
    pub fn delete_dataset(&self, name: &str) -> Result<()> {
        let changed = self
            .conn()
            .execute("DELETE FROM datasets WHERE name = ?1", [name])
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownDataset(name.into()));
        }
        Ok(())
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

const RUN_COLUMNS: &str =
    "id, name, status, config, dataset, model, image_size, epochs_planned, epochs_done, best_epoch, \
     best_metric_name, best_metric, created_at, started_at, finished_at, tags, notes, error, checkpoint_dir, device, \
     best_val_mean_auroc, best_val_accuracy";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        name: r.get(1)?,
        status: RunStatus::parse(&r.get::<_, String>(2)?),
        config: parse_json(r.get::<_, String>(3)?),
        dataset: r.get(4)?,
        model: r.get(5)?,
        image_size: r.get(6)?,
        epochs_planned: r.get(7)?,
        epochs_done: r.get(8)?,
        best_epoch: r.get(9)?,
        best_metric_name: r.get(10)?,
        best_metric: r.get(11)?,
        created_at: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        tags: serde_json::from_str(&r.get::<_, String>(15)?).unwrap_or_default(),
        notes: r.get(16)?,
        error: r.get(17)?,
        checkpoint_dir: r.get(18)?,
        device: r.get(19)?,
        best_val_mean_auroc: r.get(20)?,
        best_val_accuracy: r.get(21)?,
    })
}

fn dataset_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DatasetRow> {
    Ok(DatasetRow {
        name: r.get(0)?,
        label_file: r.get(1)?,
        image_dir: r.get(2)?,
        created_at: r.get(3)?,
        summary: parse_json(r.get::<_, String>(4)?),
    })
}

/// Stored JSON was written by us; an unreadable value is kept visible as a string rather than
/// failing the whole page.
fn parse_json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// UTC, RFC 3339 with milliseconds: sorts as text in time order.
pub fn now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(&format).expect("valid format")
}

/// An epoch from a `SELECT epoch, <metrics JSON>, committed_at` row.
fn epoch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EpochRow> {
    Ok(EpochRow {
        epoch: r.get(0)?,
        metrics: parse_json(r.get::<_, String>(1)?),
        committed_at: r.get(2)?,
    })
}

/// How often `create_run` draws another id after a collision before giving up (each draw has
/// 65,536 choices within the second, so reaching this means something else is wrong).
const MAX_ID_DRAWS: u32 = 64;

/// Sortable and readable: `20261129-034512-7f3a`. Not unique by itself: see `create_run`.
fn new_run_id() -> String {
    use rand::Rng;
    let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let stamp = time::OffsetDateTime::now_utc().format(&format).expect("valid format");
    format!("{stamp}-{:04x}", rand::rng().random::<u16>())
}

#[cfg(test)]
mod tests {
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
                .add_dataset("nih", "/d/Data_Entry_2017.csv", "/d/images", &json!({"images": 5}))
                .unwrap();
            let again = store.add_dataset("nih", "/other.csv", "/other", &json!({}));
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
                &json!({"val_mean_auroc": 0.9, "val_accuracy": 0.25}),
                Some((3, "val_mean_auroc", 0.9)),
            )
            .unwrap();
        assert_eq!(headlines(&store), (Some(0.9), Some(0.25)));
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
            epoch("a", 2, r#"{"val_mean_auroc": 0.8, "val_accuracy": 0.75}"#);
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

    fn new_run(store: &Store) -> Result<String> {
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
            store.add_dataset("nih", "/l.csv", "/i", &json!({})),
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
