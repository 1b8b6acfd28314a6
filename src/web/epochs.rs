//! Scalar epoch rows per run, kept between requests. A compare page and its chart requests read
//! the same runs' epochs several times a second while a run trains, and a finished run's epochs
//! never change; each read checks the store's cheap [`EpochsStamp`], so a new or replaced epoch is
//! seen at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::scalars::EpochsStamp;
use crate::store::{self, EpochRow, Store};

/// Runs whose epochs are kept: a compare page shows at most 10; a few pages' worth covers
/// several open tabs (a 200-epoch run's scalar rows are about 60 KB).
const CACHED_RUNS: usize = 64;

/// A run's epoch rows and the stamp they were read at.
type CachedEpochs = (EpochsStamp, Arc<Vec<EpochRow>>);

#[derive(Default)]
pub struct EpochCache {
    runs: Mutex<HashMap<String, CachedEpochs>>,
}

impl EpochCache {
    /// The run's epochs with scalar metrics only (see [`Store::scalar_epochs`]), oldest first.
    pub fn scalar_epochs(&self, store: &Store, id: &str) -> store::Result<Arc<Vec<EpochRow>>> {
        // The stamp is read before the rows: rows newer than their stamp only cause one extra
        // read later, never a stale answer.
        let stamp = store.epochs_stamp(id)?;
        if let Some((cached, rows)) = self.lock().get(id) {
            if *cached == stamp {
                return Ok(rows.clone());
            }
        }
        let rows = Arc::new(store.scalar_epochs(id)?);
        let mut runs = self.lock();
        if runs.len() >= CACHED_RUNS && !runs.contains_key(id) {
            // Any entry will do: a missed one costs a single store read.
            if let Some(victim) = runs.keys().next().cloned() {
                runs.remove(&victim);
            }
        }
        runs.insert(id.to_string(), (stamp, rows.clone()));
        Ok(rows)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedEpochs>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;
    use serde_json::json;

    #[test]
    fn cached_rows_are_reused_until_an_epoch_is_added_or_replaced() {
        let store = Store::open_in_memory().unwrap();
        let id = store
            .create_run(&NewRun {
                name: "r",
                config: &json!({}),
                dataset: "demo",
                model: "m",
                image_size: 64,
                epochs_planned: 3,
                tags: &[],
            })
            .unwrap();
        let cache = EpochCache::default();
        store.record_epoch(&id, 1, &json!({"val_loss": 1.0}), None).unwrap();
        let first = cache.scalar_epochs(&store, &id).unwrap();
        assert!(
            Arc::ptr_eq(&first, &cache.scalar_epochs(&store, &id).unwrap()),
            "unchanged: reused"
        );
        store.record_epoch(&id, 2, &json!({"val_loss": 0.5}), None).unwrap();
        let second = cache.scalar_epochs(&store, &id).unwrap();
        assert_eq!(second.len(), 2, "a new epoch is seen at once");
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.record_epoch(&id, 2, &json!({"val_loss": 0.25}), None).unwrap();
        assert_eq!(cache.scalar_epochs(&store, &id).unwrap()[1].metrics["val_loss"], 0.25);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let store = Store::open_in_memory().unwrap();
        let cache = EpochCache::default();
        for i in 0..CACHED_RUNS + 5 {
            cache.scalar_epochs(&store, &format!("run-{i}")).unwrap();
        }
        assert_eq!(cache.lock().len(), CACHED_RUNS);
    }
}
