//! Grad-CAM maps already computed, per checkpoint, stored upload and label, so the result page,
//! its overlay image and a label switched back to reuse them instead of running the model again.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{lock, ModelKey};
use crate::train::gradcam::{GradCamSearch, HeatMap};

/// Maps kept (each at the model's input size: 200 KB at 224 px, 1 MB at 512 px).
pub(super) const CACHED_MAPS: usize = 48;

/// One map: checkpoint, stored upload's hash, label index.
type MapKey = (ModelKey, String, usize);

/// The most recently computed maps, oldest first.
pub(super) struct MapCache {
    maps: Mutex<VecDeque<(MapKey, HeatMap)>>,
    capacity: usize,
}

impl MapCache {
    pub(super) fn new(capacity: usize) -> MapCache {
        MapCache {
            maps: Mutex::default(),
            capacity,
        }
    }

    /// The [`GradCamSearch`] over `order` for upload `sha` with checkpoint `model`: maps from the
    /// cache while it has them, the rest (if the search goes on) from `compute`, which is given
    /// the labels not looked at yet and whose maps are then cached.
    pub(super) fn search<E>(
        &self,
        model: &ModelKey,
        sha: &str,
        order: &[usize],
        compute: impl FnOnce(&[usize]) -> Result<GradCamSearch, E>,
    ) -> Result<GradCamSearch, E> {
        let key = |label: usize| (model.clone(), sha.to_string(), label);
        let mut computed = Vec::new();
        {
            let maps = lock(&self.maps);
            for &label in order {
                let Some((_, map)) = maps.iter().find(|(k, _)| *k == key(label)) else {
                    break;
                };
                computed.push((label, map.clone()));
                if !map.empty {
                    return Ok(GradCamSearch { computed });
                }
            }
        }
        let rest = &order[computed.len()..];
        if !rest.is_empty() {
            let found = compute(rest)?;
            let mut maps = lock(&self.maps);
            for (label, map) in &found.computed {
                maps.retain(|(k, _)| *k != key(*label));
                maps.push_back((key(*label), map.clone()));
            }
            while maps.len() > self.capacity {
                maps.pop_front();
            }
            computed.extend(found.computed);
        }
        Ok(GradCamSearch { computed })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::PathBuf;

    use super::*;
    use crate::train::gradcam::test_utils::map;

    #[test]
    fn maps_are_computed_once_per_checkpoint_upload_and_label() {
        let cache = MapCache::new(3);
        let model = ModelKey {
            epoch_dir: PathBuf::from("run/epoch-0001"),
            modified: None,
        };
        // Labels 0 and 1 have empty maps, label 2 does not.
        let asked = RefCell::new(Vec::new());
        let compute = |labels: &[usize]| {
            asked.borrow_mut().push(labels.to_vec());
            GradCamSearch::run(labels, |label| Ok::<_, ()>(map(label < 2)))
        };
        let chosen = |search: GradCamSearch| search.chosen().0;

        assert_eq!(chosen(cache.search(&model, "a", &[0, 1, 2, 3], compute).unwrap()), 2);
        assert_eq!(chosen(cache.search(&model, "a", &[0, 1, 2, 3], compute).unwrap()), 2);
        assert_eq!(chosen(cache.search(&model, "a", &[1], compute).unwrap()), 1);
        assert_eq!(*asked.borrow(), [vec![0, 1, 2, 3]], "the search ran the model once");

        // Another upload or checkpoint is computed afresh; a cached prefix is not.
        cache.search(&model, "b", &[1, 3], compute).unwrap();
        let retrained = ModelKey {
            modified: Some(std::time::SystemTime::UNIX_EPOCH),
            ..model.clone()
        };
        cache.search(&retrained, "a", &[2], compute).unwrap();
        assert_eq!(asked.borrow()[1..], [vec![1, 3], vec![2]]);

        // Only the last 3 maps are kept: upload b's two and the retrained checkpoint's one;
        // upload a's first maps are gone.
        asked.borrow_mut().clear();
        cache.search(&model, "b", &[1, 3], compute).unwrap();
        assert!(asked.borrow().is_empty());
        let search = cache.search(&model, "a", &[0, 2], compute).unwrap();
        assert_eq!((search.chosen().0, search.computed.len()), (2, 2));
        assert_eq!(*asked.borrow(), [vec![0, 2]]);
        let errors = cache.search(&model, "c", &[0], |_| Err::<GradCamSearch, _>("boom"));
        assert_eq!(errors.unwrap_err(), "boom");
    }
}
