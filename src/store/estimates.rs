//! Duration estimates: measured training-step timings under their cache key (the JSON is the
//! service's; the store only keeps it), and the estimate each run was submitted with.

use rusqlite::{params, OptionalExtension};

use super::rows::parse_json;
use super::*;

/// A cached timing as stored, with when it was measured (UTC, RFC 3339).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTiming {
    pub timing: serde_json::Value,
    pub measured_at: String,
}

impl Store {
    /// The timing measured under `key`, if any.
    pub fn step_timing(&self, key: &str) -> Result<Option<StoredTiming>> {
        self.conn()
            .query_row(
                "SELECT timing, measured_at FROM step_timings WHERE key = ?1",
                [key],
                |row| {
                    Ok(StoredTiming {
                        timing: parse_json(row.get::<_, String>(0)?),
                        measured_at: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.wrap())
    }

    /// Stores (or replaces) the timing measured under `key`, stamped now; returns the stamp.
    pub fn put_step_timing(&self, key: &str, timing: &serde_json::Value) -> Result<String> {
        self.room_for_more()?;
        let measured_at = now();
        self.conn()
            .execute(
                "INSERT INTO step_timings (key, timing, measured_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET timing = excluded.timing, measured_at = excluded.measured_at",
                params![key, timing.to_string(), measured_at],
            )
            .map_err(self.wrap())?;
        Ok(measured_at)
    }

    /// How many timings are cached (what `cxr8` has measured on this data folder).
    pub fn step_timing_count(&self) -> Result<usize> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM step_timings", [], |row| row.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(self.wrap())
    }

    /// Keeps the duration estimate a run was submitted with.
    pub fn set_run_estimate(&self, id: &str, estimate: &serde_json::Value) -> Result<()> {
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET estimate = ?2 WHERE id = ?1",
                params![id, estimate.to_string()],
            )
            .map_err(self.wrap())?;
        if changed == 0 {
            return Err(Error::UnknownRun(id.into()));
        }
        Ok(())
    }

    /// The estimate a run was submitted with; `None` for runs submitted without one.
    pub fn run_estimate(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let text: Option<Option<String>> = self
            .conn()
            .query_row("SELECT estimate FROM runs WHERE id = ?1", [id], |row| row.get(0))
            .optional()
            .map_err(self.wrap())?;
        Ok(text.flatten().map(parse_json))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_timing_is_kept_per_key_and_replaced_by_a_new_measurement() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.step_timing("k").unwrap(), None);
        store.put_step_timing("k", &json!({"ms": 1})).unwrap();
        store.put_step_timing("other", &json!({"ms": 5})).unwrap();
        store.put_step_timing("k", &json!({"ms": 2})).unwrap();
        let kept = store.step_timing("k").unwrap().unwrap();
        assert_eq!(kept.timing, json!({"ms": 2}));
        assert!(kept.measured_at.ends_with('Z'), "{}", kept.measured_at);
        assert_eq!(store.step_timing_count().unwrap(), 2);
    }

    #[test]
    fn a_run_keeps_its_estimate_and_an_unknown_run_is_named() {
        let store = Store::open_in_memory().unwrap();
        let id = super::super::tests::new_run(&store).unwrap();
        assert_eq!(store.run_estimate(&id).unwrap(), None);
        store.set_run_estimate(&id, &json!({"total_seconds": 240})).unwrap();
        assert_eq!(store.run_estimate(&id).unwrap(), Some(json!({"total_seconds": 240})));
        assert!(matches!(
            store.set_run_estimate("nope", &json!({})),
            Err(Error::UnknownRun(_))
        ));
        assert_eq!(store.run_estimate("nope").unwrap(), None);
    }
}
