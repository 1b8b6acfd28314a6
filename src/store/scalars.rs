//! Lean reads for the dashboard. An epoch row is ~2 KB of JSON, almost all of it the per-label
//! rows (`val_per_label`, with confusion counts); charts and tables need only the scalar metrics,
//! and the runs list needs no config. These queries leave the bulk in SQLite, so a page parses a
//! few hundred bytes per epoch instead of kilobytes, and the per-label rows only for the one epoch
//! it shows.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension};

use super::rows::{epoch_from_row, parse_json, run_from_row, RUN_COLUMNS};
use super::schema::SET_BEST_HEADLINES;
use super::{EpochRow, EventRow, Result, Run, Store};

/// `metrics` without the per-label rows; malformed text is passed through untouched (SQLite's
/// JSON functions would fail the whole query on it) and shown as a string, like [`Store::epochs`].
const SCALAR_METRICS: &str =
    "CASE WHEN json_valid(metrics) THEN json_remove(metrics, '$.val_per_label') ELSE metrics END";

/// What changes whenever a run's epochs change: their count and newest commit time (a replaced
/// epoch gets a new `committed_at`). Cheap to read, so a cache can check it on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochsStamp {
    pub count: u32,
    pub last_commit: Option<String>,
}

impl Store {
    /// A run's epochs, oldest first, with every metric except `val_per_label`.
    pub fn scalar_epochs(&self, id: &str) -> Result<Vec<EpochRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT epoch, {SCALAR_METRICS}, committed_at FROM epochs WHERE run_id = ?1 ORDER BY epoch"
            ))
            .map_err(self.wrap())?;
        let rows = stmt.query_map([id], epoch_from_row).map_err(self.wrap())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())
    }

    /// One epoch with all its metrics (per-label rows included), if stored.
    pub fn epoch_row(&self, id: &str, epoch: u32) -> Result<Option<EpochRow>> {
        self.conn()
            .query_row(
                "SELECT epoch, metrics, committed_at FROM epochs WHERE run_id = ?1 AND epoch = ?2",
                params![id, epoch],
                epoch_from_row,
            )
            .optional()
            .map_err(self.wrap())
    }

    /// See [`EpochsStamp`].
    pub fn epochs_stamp(&self, id: &str) -> Result<EpochsStamp> {
        self.conn()
            .query_row(
                "SELECT count(*), max(committed_at) FROM epochs WHERE run_id = ?1",
                [id],
                |r| {
                    Ok(EpochsStamp {
                        count: r.get(0)?,
                        last_commit: r.get(1)?,
                    })
                },
            )
            .map_err(self.wrap())
    }

    /// The newest `limit` events of a run, oldest first, and how many the run has in all.
    pub fn recent_events(&self, id: &str, limit: usize) -> Result<(Vec<EventRow>, usize)> {
        let conn = self.conn();
        let total: usize = conn
            .query_row("SELECT count(*) FROM events WHERE run_id = ?1", [id], |r| r.get(0))
            .map_err(self.wrap())?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, run_id, kind, payload, at FROM events WHERE run_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(self.wrap())?;
        let rows = stmt
            .query_map(params![id, limit as i64], |r| {
                Ok(EventRow {
                    seq: r.get(0)?,
                    run_id: r.get(1)?,
                    kind: r.get(2)?,
                    payload: parse_json(r.get::<_, String>(3)?),
                    at: r.get(4)?,
                })
            })
            .map_err(self.wrap())?;
        let mut events: Vec<EventRow> = rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())?;
        events.reverse();
        Ok((events, total))
    }

    /// Events of any of `ids` with `seq > after`, oldest first, and the newest `seq` of the whole
    /// store (read first, so every event committed later has a higher `seq` than it: commits
    /// are serialised and `seq` grows with them). An event stream uses the latter to know which
    /// live events it has already covered.
    pub fn events_of_runs_after(&self, ids: &[String], after: i64) -> Result<(Vec<EventRow>, i64)> {
        let conn = self.conn();
        let newest: i64 = conn
            .query_row("SELECT COALESCE(max(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(self.wrap())?;
        if ids.is_empty() {
            return Ok((Vec::new(), newest));
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("?{i}")).collect();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT seq, run_id, kind, payload, at FROM events WHERE seq > ?1 AND run_id IN ({}) ORDER BY seq",
                placeholders.join(", ")
            ))
            .map_err(self.wrap())?;
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&after];
        values.extend(ids.iter().map(|id| id as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(values.as_slice(), |r| {
                Ok(EventRow {
                    seq: r.get(0)?,
                    run_id: r.get(1)?,
                    kind: r.get(2)?,
                    payload: parse_json(r.get::<_, String>(3)?),
                    at: r.get(4)?,
                })
            })
            .map_err(self.wrap())?;
        let events: Vec<EventRow> = rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())?;
        Ok((events, newest))
    }

    /// The newest event `seq` in the store (0 when there are none): where a page's live stream
    /// starts, so it receives only what happens after the page was drawn.
    pub fn last_event_seq(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT COALESCE(max(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(self.wrap())
    }

    /// All runs, newest first, for the runs list: only the columns it shows, all read from the
    /// `runs_listing` index without touching the table. `config` is `Null`, `notes` empty, and
    /// `error`, `checkpoint_dir` and `device` are `None` whatever is stored. The rows are kept
    /// until `runs_version` moves: decoding 10,000 rows is most of the list's time, and they
    /// change about once an epoch while the page may be reloaded many times.
    pub fn runs_for_list(&self) -> Result<Arc<Vec<Run>>> {
        let conn = self.conn();
        // Read under the same lock as the rows, so the version always matches what is cached.
        let version: i64 = conn
            .query_row("SELECT version FROM runs_version", [], |r| r.get(0))
            .map_err(self.wrap())?;
        let mut cache = self.list_cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached, runs)) = cache.as_ref() {
            if *cached == version {
                return Ok(runs.clone());
            }
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, name, status, 'null', dataset, model, image_size, epochs_planned, epochs_done, \
                 best_epoch, best_metric_name, best_metric, created_at, started_at, finished_at, tags, '', NULL, \
                 NULL, NULL, best_val_mean_auroc, best_val_accuracy, NULL, test_mean_auroc, best_val_balanced_accuracy \
                 FROM runs INDEXED BY runs_listing ORDER BY created_at DESC, id DESC",
            )
            .map_err(self.wrap())?;
        let rows = stmt.query_map([], run_from_row).map_err(self.wrap())?;
        let runs = Arc::new(rows.collect::<rusqlite::Result<Vec<Run>>>().map_err(self.wrap())?);
        *cache = Some((version, runs.clone()));
        Ok(runs)
    }

    /// Up to `limit` runs, newest first, from the `offset`-th on, each with its config as the
    /// stored JSON text (unparsed) and `config` left `Null`: the API passes the text on. Walks the
    /// `runs_listing` index, so a page costs the same with 10 runs or 10,000.
    pub fn runs_with_raw_config(&self, limit: usize, offset: usize) -> Result<Vec<(Run, String)>> {
        let conn = self.conn();
        // The config column is read as text in place of the parsed one; the other columns are as
        // in `runs()`.
        // The list leaves out the test report too (its mean AUROC stays).
        let columns = RUN_COLUMNS
            .replacen("config", "'null'", 1)
            .replacen("test_report", "NULL", 1);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {columns}, config FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2"
            ))
            .map_err(self.wrap())?;
        // SQLite takes 64-bit limits; anything larger than that is "all" anyway.
        let clamp = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![clamp(limit), clamp(offset)], |r| {
                Ok((run_from_row(r)?, r.get::<_, String>(25)?))
            })
            .map_err(self.wrap())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.wrap())
    }

    pub fn run_count(&self) -> Result<usize> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(self.wrap())
    }
}

/// A finished run for [`Store::insert_finished_runs`].
#[derive(Debug, Clone)]
pub struct FinishedRun {
    /// Chosen by the caller (bulk ids must not collide, see `new_run_id`).
    pub id: String,
    pub name: String,
    pub config: serde_json::Value,
    pub dataset: String,
    pub model: String,
    pub image_size: u32,
    pub tags: Vec<String>,
    /// Flat epoch rows as training stores them, epoch 1 first.
    pub epochs: Vec<serde_json::Value>,
    /// (epoch, metric name, value).
    pub best: Option<(u32, String, f64)>,
}

/// Runs per transaction in a bulk insert: one commit per epoch (as training does) would make a
/// 10,000 × 100-epoch store take most of an hour, and one commit for everything would need a
/// write-ahead log as large as the store itself.
const RUNS_PER_COMMIT: usize = 100;

impl Store {
    /// Inserts finished runs with their epochs and the events training would have stored
    /// (`status`, one `epoch` per epoch carrying its metrics, `done`), [`RUNS_PER_COMMIT`] runs
    /// per transaction. For building big stores (benchmarks, imports); returns how many runs.
    pub fn insert_finished_runs(&self, runs: impl IntoIterator<Item = FinishedRun>) -> Result<usize> {
        let mut conn = self.conn();
        let mut runs = runs.into_iter().peekable();
        let mut count = 0;
        while runs.peek().is_some() {
            let tx = conn.transaction().map_err(self.wrap())?;
            {
                let mut insert_run = tx
                    .prepare_cached(
                        "INSERT INTO runs (id, name, status, config, dataset, model, image_size, epochs_planned, \
                         epochs_done, best_epoch, best_metric_name, best_metric, created_at, started_at, finished_at, tags) \
                         VALUES (?1, ?2, 'done', ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?11, ?11, ?12)",
                    )
                    .map_err(self.wrap())?;
                let mut insert_epoch = tx
                    .prepare_cached("INSERT INTO epochs (run_id, epoch, metrics, committed_at) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(self.wrap())?;
                let mut insert_event = tx
                    .prepare_cached("INSERT INTO events (run_id, kind, payload, at) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(self.wrap())?;
                let mut set_headlines = tx
                    .prepare_cached(&format!("UPDATE runs SET {SET_BEST_HEADLINES} WHERE id = ?1"))
                    .map_err(self.wrap())?;
                for run in runs.by_ref().take(RUNS_PER_COMMIT) {
                    let at = super::now();
                    let (best_epoch, best_name, best_value) = match &run.best {
                        Some((e, n, v)) => (Some(*e), Some(n.as_str()), Some(*v)),
                        None => (None, None, None),
                    };
                    let tags = serde_json::to_string(&run.tags).expect("strings serialise");
                    insert_run
                        .execute(params![
                            run.id,
                            run.name,
                            run.config.to_string(),
                            run.dataset,
                            run.model,
                            run.image_size,
                            run.epochs.len() as u32,
                            best_epoch,
                            best_name,
                            best_value,
                            at,
                            tags
                        ])
                        .map_err(self.wrap())?;
                    insert_event
                        .execute(params![run.id, "status", r#"{"status":"running"}"#, at])
                        .map_err(self.wrap())?;
                    for (i, metrics) in run.epochs.iter().enumerate() {
                        insert_epoch
                            .execute(params![run.id, i as u32 + 1, metrics.to_string(), at])
                            .map_err(self.wrap())?;
                        let mut payload = metrics.clone();
                        if let Some(object) = payload.as_object_mut() {
                            object.insert("type".into(), "epoch".into());
                        }
                        insert_event
                            .execute(params![run.id, "epoch", payload.to_string(), at])
                            .map_err(self.wrap())?;
                    }
                    insert_event
                        .execute(params![run.id, "done", r#"{"status":"done"}"#, at])
                        .map_err(self.wrap())?;
                    set_headlines.execute([&run.id]).map_err(self.wrap())?;
                    count += 1;
                }
            }
            tx.commit().map_err(self.wrap())?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::super::NewRun;
    use super::*;
    use serde_json::json;

    fn store_with_epochs() -> (Store, String) {
        let store = Store::open_in_memory().unwrap();
        let config = json!({"model": "resnet-18", "lr": 0.001});
        let id = store
            .create_run(&NewRun {
                name: "r",
                config: &config,
                dataset: "demo",
                model: "resnet-18",
                image_size: 64,
                epochs_planned: 2,
                tags: &["t".into()],
            })
            .unwrap();
        for epoch in 1..=2 {
            let metrics = json!({
                "val_loss": 0.1 + 0.2 * epoch as f64, "note": "kept", "lr": 1e-5,
                "val_per_label": [{"label": "Effusion", "auroc": 0.7, "tp": 3}],
            });
            store.record_epoch(&id, epoch, &metrics, None).unwrap();
        }
        (store, id)
    }

    #[test]
    fn scalar_epochs_are_the_full_rows_without_per_label_metrics() {
        let (store, id) = store_with_epochs();
        let full = store.epochs(&id).unwrap();
        let scalar = store.scalar_epochs(&id).unwrap();
        assert_eq!(scalar.len(), full.len());
        for (mut f, s) in full.into_iter().zip(scalar) {
            assert!(f.metrics.as_object_mut().unwrap().remove("val_per_label").is_some());
            // Numbers survive SQLite's JSON rewrite exactly (0.30000000000000004 included).
            assert_eq!(f, s);
        }
        assert_eq!(
            store.epoch_row(&id, 2).unwrap().unwrap().metrics["val_per_label"][0]["tp"],
            3
        );
        assert!(store.epoch_row(&id, 9).unwrap().is_none());
    }

    #[test]
    fn malformed_metrics_stay_visible_instead_of_failing_the_query() {
        let (store, id) = store_with_epochs();
        store
            .conn()
            .execute(
                "UPDATE epochs SET metrics = '{oops' WHERE run_id = ?1 AND epoch = 1",
                [&id],
            )
            .unwrap();
        let scalar = store.scalar_epochs(&id).unwrap();
        assert_eq!(scalar[0].metrics, json!("{oops"));
        assert_eq!(scalar[1].metrics["val_loss"], 0.5);
    }

    #[test]
    fn the_stamp_changes_when_an_epoch_is_added_or_replaced() {
        let (store, id) = store_with_epochs();
        let first = store.epochs_stamp(&id).unwrap();
        assert_eq!(first.count, 2);
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.record_epoch(&id, 2, &json!({"val_loss": 0.2}), None).unwrap();
        let replaced = store.epochs_stamp(&id).unwrap();
        assert_eq!(replaced.count, 2);
        assert_ne!(replaced, first, "a replaced epoch changes the stamp");
        assert_eq!(
            store.epochs_stamp("nope").unwrap(),
            EpochsStamp {
                count: 0,
                last_commit: None
            }
        );
    }

    #[test]
    fn recent_events_are_the_newest_in_order_with_the_total() {
        let (store, id) = store_with_epochs();
        let seqs: Vec<i64> = (0..5)
            .map(|i| store.append_event(&id, "progress", &json!({"step": i})).unwrap())
            .collect();
        let (events, total) = store.recent_events(&id, 3).unwrap();
        assert_eq!(total, 5);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[2..]);
        assert_eq!(store.recent_events(&id, 10).unwrap().0.len(), 5);
        assert_eq!(store.recent_events("nope", 10).unwrap(), (Vec::new(), 0));
    }

    #[test]
    fn events_of_several_runs_interleave_by_seq() {
        let (store, a) = store_with_epochs();
        let (b, c) = (make_run(&store), make_run(&store));
        let mut expected = Vec::new();
        for (i, run) in [&a, &b, &c, &a, &b].into_iter().enumerate() {
            let seq = store.append_event(run, "progress", &json!({"i": i})).unwrap();
            if run != &c {
                expected.push(seq);
            }
        }
        let (events, newest) = store.events_of_runs_after(&[a.clone(), b.clone()], 0).unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
        assert_eq!(newest, store.last_event_seq().unwrap());
        let (later, _) = store.events_of_runs_after(&[a, b], expected[1]).unwrap();
        assert_eq!(later.iter().map(|e| e.seq).collect::<Vec<_>>(), expected[2..]);
    }

    fn make_run(store: &Store) -> String {
        store
            .create_run(&NewRun {
                name: "other",
                config: &json!({}),
                dataset: "demo",
                model: "m",
                image_size: 64,
                epochs_planned: 1,
                tags: &[],
            })
            .unwrap()
    }

    #[test]
    fn bulk_inserted_runs_read_like_recorded_ones() {
        let store = Store::open_in_memory().unwrap();
        let runs = (0..250).map(|i| FinishedRun {
            id: format!("bulk-{i:03}"),
            name: format!("run {i}"),
            config: json!({"model": "simple-cnn"}),
            dataset: "demo".into(),
            model: "simple-cnn".into(),
            image_size: 64,
            tags: vec!["bulk".into()],
            epochs: vec![
                json!({"epoch": 1, "val_mean_auroc": 0.5}),
                json!({"epoch": 2, "val_mean_auroc": 0.75, "val_accuracy": 0.875}),
            ],
            best: Some((2, "val_mean_auroc".into(), 0.75)),
        });
        assert_eq!(store.insert_finished_runs(runs).unwrap(), 250);
        let run = store.run("bulk-249").unwrap().unwrap();
        assert_eq!(
            (run.status, run.epochs_done, run.best_epoch),
            (super::super::RunStatus::Done, 2, Some(2))
        );
        assert_eq!(run.config["model"], "simple-cnn");
        assert_eq!(run.tags, ["bulk"]);
        assert_eq!(store.epochs("bulk-100").unwrap()[1].metrics["val_mean_auroc"], 0.75);
        let events = store.events_after("bulk-000", 0).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["status", "epoch", "epoch", "done"]);
        assert_eq!(events[2].payload["type"], "epoch");
        let run = store.run("bulk-007").unwrap().unwrap();
        assert_eq!(
            (run.best_val_mean_auroc, run.best_val_accuracy),
            (Some(0.75), Some(0.875))
        );
    }

    #[test]
    fn runs_with_raw_config_match_runs_but_for_the_parsed_config() {
        let (store, id) = store_with_epochs();
        // Every column set, so that the listing's placeholders and its index are both checked.
        store
            .update_meta(&id, "renamed", &["t1".into(), "t2".into()], "a note")
            .unwrap();
        store.set_runtime_info(&id, "cpu", "/ckpts/x").unwrap();
        store
            .set_status(&id, super::super::RunStatus::Failed, Some("why"))
            .unwrap();
        let full = store.runs().unwrap();
        let lean = store.runs_with_raw_config(usize::MAX, 0).unwrap();
        assert_eq!(full.len(), lean.len());
        for (f, (l, config)) in full.into_iter().zip(lean) {
            assert_eq!(serde_json::from_str::<serde_json::Value>(&config).unwrap(), f.config);
            assert_eq!(l.config, serde_json::Value::Null);
            assert_eq!(
                Run {
                    config: f.config.clone(),
                    ..l
                },
                f
            );
        }
        let listed = store.runs_for_list().unwrap();
        let blanked: Vec<Run> = store
            .runs_with_raw_config(usize::MAX, 0)
            .unwrap()
            .into_iter()
            .map(|(r, _)| Run {
                notes: String::new(),
                error: None,
                checkpoint_dir: None,
                device: None,
                ..r
            })
            .collect();
        assert_eq!(*listed, blanked);
    }
}
