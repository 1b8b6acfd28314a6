//! The database schema, one block per version, and the SQL that keeps a run's headline numbers
//! equal to its best epoch's.

pub(super) const SCHEMA_VERSION: i64 = 6;

pub(super) const SCHEMA_V1: &str = "
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
pub(super) const SCHEMA_V2: &str = "
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
pub(super) const SCHEMA_V3: &str = "
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

/// Version 4: the best checkpoint's held-out test results (the whole report as JSON), and its
/// mean AUROC as a column the runs list reads from its covering index.
pub(super) const SCHEMA_V4: &str = "
ALTER TABLE runs ADD COLUMN test_report TEXT;
ALTER TABLE runs ADD COLUMN test_mean_auroc REAL;
DROP INDEX runs_listing;
CREATE INDEX runs_listing ON runs(created_at, id, name, status, dataset, model, image_size, epochs_planned,
    epochs_done, best_epoch, best_metric_name, best_metric, started_at, finished_at, tags,
    best_val_mean_auroc, best_val_accuracy, test_mean_auroc);
";

/// Version 5: the best epoch's balanced accuracy (single-label runs' headline; NULL for
/// multi-label runs, whose headline is mean AUROC), in the list's covering index like the others;
/// and a data set's own validation and test label files (a split given as files, NIH-CXR-LT's).
/// The migration then fills every headline column of stored runs (`SET_BEST_HEADLINES`).
pub(super) const SCHEMA_V5: &str = "
ALTER TABLE runs ADD COLUMN best_val_balanced_accuracy REAL;
ALTER TABLE datasets ADD COLUMN val_label_file TEXT;
ALTER TABLE datasets ADD COLUMN test_label_file TEXT;
DROP INDEX runs_listing;
CREATE INDEX runs_listing ON runs(created_at, id, name, status, dataset, model, image_size, epochs_planned,
    epochs_done, best_epoch, best_metric_name, best_metric, started_at, finished_at, tags,
    best_val_mean_auroc, best_val_accuracy, test_mean_auroc, best_val_balanced_accuracy);
";

/// Version 6: step points are `step` events, between thousands of `progress` events of the same
/// run; `events_by_kind` makes a run's step chart one range read of its step points alone.
/// Measured training-step timings, the new-run form's duration estimates keyed by machine,
/// backend, model and shapes (the JSON is the service's), and the estimate a run was submitted
/// with, to set against its real duration.
pub(super) const SCHEMA_V6: &str = "
CREATE INDEX events_by_kind ON events(run_id, kind, seq);
CREATE TABLE step_timings (
    key TEXT PRIMARY KEY,
    timing TEXT NOT NULL,
    measured_at TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN estimate TEXT;
";

/// `UPDATE runs SET` assignments copying the best epoch's headline numbers from its stored
/// metrics onto the run: NULL when the run has no best epoch, or the value is missing or not a
/// number (or the row is not JSON: the migration must not fail on a damaged row). The one definition used by the migration, `record_epoch` and bulk inserts, so the
/// columns cannot drift from the epoch rows.
pub(super) const SET_BEST_HEADLINES: &str = "
best_val_mean_auroc = (SELECT CASE WHEN NOT json_valid(e.metrics) THEN NULL
    WHEN json_type(e.metrics, '$.val_mean_auroc') IN ('integer', 'real')
    THEN json_extract(e.metrics, '$.val_mean_auroc') END
    FROM epochs e WHERE e.run_id = runs.id AND e.epoch = runs.best_epoch),
best_val_accuracy = (SELECT CASE WHEN NOT json_valid(e.metrics) THEN NULL
    WHEN json_type(e.metrics, '$.val_accuracy') IN ('integer', 'real')
    THEN json_extract(e.metrics, '$.val_accuracy') END
    FROM epochs e WHERE e.run_id = runs.id AND e.epoch = runs.best_epoch),
best_val_balanced_accuracy = (SELECT CASE WHEN NOT json_valid(e.metrics) THEN NULL
    WHEN json_type(e.metrics, '$.val_balanced_accuracy') IN ('integer', 'real')
    THEN json_extract(e.metrics, '$.val_balanced_accuracy') END
    FROM epochs e WHERE e.run_id = runs.id AND e.epoch = runs.best_epoch)";
