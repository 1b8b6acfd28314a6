//! Runs, their epochs and their events: creating, recording, reading, deleting.

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{epoch_from_row, parse_json, run_from_row, RUN_COLUMNS};
use super::schema::SET_BEST_HEADLINES;
use super::*;

impl Store {
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

    /// Stores the run's held-out test results (replacing earlier ones) with their event.
    pub fn set_test_with_event(
        &self,
        id: &str,
        report: &serde_json::Value,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.wrap())?;
        let mean = report.get("mean_auroc").and_then(serde_json::Value::as_f64);
        let changed = tx
            .execute(
                "UPDATE runs SET test_report = ?2, test_mean_auroc = ?3 WHERE id = ?1",
                params![id, report.to_string(), mean],
            )
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownRun(id.into()));
        }
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
