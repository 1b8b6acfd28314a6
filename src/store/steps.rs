//! A run's step points (its `step` events) as the step-level training curve: one indexed range
//! read (`events_by_kind`), and a resume's replay of an epoch replacing what it repeats.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Result, Store};

/// One point of a run's step-level training curve, as the engine's `step` event stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPoint {
    /// Global step (batches since the run began, across epochs and resumes).
    pub step: u64,
    pub epoch: u32,
    /// Steps the point averages over.
    #[serde(default)]
    pub window_steps: u64,
    /// Mean training loss per image over the window.
    pub loss: f64,
    #[serde(default)]
    pub top1_accuracy: Option<f64>,
    #[serde(default)]
    pub exact_match: Option<f64>,
    /// Training images seen since the run began.
    #[serde(default)]
    pub images: u64,
    #[serde(default)]
    pub lr: f64,
    /// Seconds of training since the run began.
    pub wall_seconds: f64,
}

impl Store {
    /// A run's step points in step order. A resumed run trains again from the epoch after its
    /// last checkpoint, so the steps it repeats were recorded twice: the later recording (the
    /// one the run's checkpoints continue from) replaces the earlier from its first step on,
    /// the way TensorBoard purges events past a restart. Rows that are not step points are
    /// skipped.
    pub fn step_points(&self, id: &str) -> Result<Vec<StepPoint>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT payload FROM events WHERE run_id = ?1 AND kind = 'step' ORDER BY seq")
            .map_err(self.wrap())?;
        let rows = stmt
            .query_map(params![id], |r| r.get::<_, String>(0))
            .map_err(self.wrap())?;
        let mut points: Vec<StepPoint> = Vec::new();
        for text in rows {
            let Ok(point) = serde_json::from_str::<StepPoint>(&text.map_err(self.wrap())?) else {
                continue;
            };
            let kept = points.partition_point(|p| p.step < point.step);
            points.truncate(kept);
            points.push(point);
        }
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use super::super::NewRun;
    use super::*;
    use serde_json::json;

    fn run(store: &Store) -> String {
        store
            .create_run(&NewRun {
                name: "r",
                config: &json!({}),
                dataset: "demo",
                model: "resnet-18",
                image_size: 64,
                epochs_planned: 2,
                tags: &[],
            })
            .unwrap()
    }

    fn point(step: u64, loss: f64) -> serde_json::Value {
        json!({"type": "step", "step": step, "epoch": 1, "window_steps": 1, "loss": loss,
               "top1_accuracy": null, "exact_match": 0.5, "images": step * 16, "lr": 0.001,
               "wall_seconds": step as f64})
    }

    #[test]
    fn step_points_come_in_step_order_without_other_events() {
        let store = Store::open_in_memory().unwrap();
        let (a, b) = (run(&store), run(&store));
        for step in [10, 20, 30] {
            store.append_event(&a, "step", &point(step, 1.0 / step as f64)).unwrap();
            store.append_event(&a, "progress", &json!({"step": 99})).unwrap();
            store.append_event(&b, "step", &point(step + 1, 9.0)).unwrap();
        }
        store.append_event(&a, "step", &json!("damaged")).unwrap();
        let points = store.step_points(&a).unwrap();
        assert_eq!(points.iter().map(|p| p.step).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(points[1].loss, 0.05);
        assert_eq!(points[0].exact_match, Some(0.5));
        assert_eq!(points[0].top1_accuracy, None);
    }

    #[test]
    fn a_resume_replaces_the_steps_it_trains_again() {
        let store = Store::open_in_memory().unwrap();
        let id = run(&store);
        // Killed in epoch 2 after step 30; resumed from epoch 1's checkpoint (step 20).
        for (step, loss) in [
            (10, 1.0),
            (20, 0.9),
            (30, 0.8),
            (40, 0.7),
            (30, 0.6),
            (40, 0.5),
            (50, 0.4),
        ] {
            store.append_event(&id, "step", &point(step, loss)).unwrap();
        }
        let points: Vec<(u64, f64)> = store
            .step_points(&id)
            .unwrap()
            .iter()
            .map(|p| (p.step, p.loss))
            .collect();
        assert_eq!(points, [(10, 1.0), (20, 0.9), (30, 0.6), (40, 0.5), (50, 0.4)]);
    }

    #[test]
    fn step_points_are_read_through_the_kind_index() {
        let store = Store::open_in_memory().unwrap();
        let plan: Vec<String> = store
            .conn()
            .prepare("EXPLAIN QUERY PLAN SELECT payload FROM events WHERE run_id = ?1 AND kind = 'step' ORDER BY seq")
            .unwrap()
            .query_map(["x"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|line| line.contains("events_by_kind")),
            "plan: {plan:?}"
        );
    }
}
