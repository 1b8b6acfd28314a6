//! Step points: the training curve between epochs. An NIH epoch at batch 16 is ~4,900 steps and
//! can take hours, so one point per epoch leaves a live chart empty for the first hour. Every
//! `every` steps the loop reports a [`TrainEvent::Step`] with the loss and accuracies averaged
//! over the steps since the previous point.
//!
//! Two bounds keep the store small whatever the run: `every` is chosen from the run's point
//! budget (`step_points`), so a run stores at most that many points; and points are at least
//! [`MIN_STEP_EVENT_INTERVAL`] apart in wall time, so a fast CPU run on tiny images cannot write
//! hundreds of rows a second (a due point then waits for the next multiple of `every`, and its
//! window covers every step since the previous point, so no step goes uncounted).

use std::time::{Duration, Instant};

use crate::train::event::TrainEvent;
use crate::train::metrics::RowHits;

/// The least wall time between two step points (each is one row in the store and one message to
/// every watching browser).
pub const MIN_STEP_EVENT_INTERVAL: Duration = Duration::from_millis(500);

/// Steps between two points so that a run of `total_steps` makes at most `budget` points:
/// `ceil(total_steps / budget)`, at least 1.
pub fn step_interval(total_steps: u64, budget: usize) -> u64 {
    total_steps.div_ceil(budget.max(1) as u64).max(1)
}

/// Where the run's step axis and clock stand when a session starts (zero for a new run; the
/// last checkpoint's for a resumed one).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunClock {
    pub steps: u64,
    pub images: u64,
    pub wall_seconds: f64,
}

/// The window of steps since the last point, and when to report the next.
pub(super) struct StepPoints {
    every: u64,
    min_interval: Duration,
    started: Instant,
    /// The clock at `started` (carried over from the checkpoint a resume starts from).
    offset: RunClock,
    last_point: Option<Instant>,
    /// Global step and images seen so far.
    step: u64,
    images: u64,
    window_steps: u64,
    window_images: usize,
    window_loss: f64,
    window_hits: RowHits,
}

impl StepPoints {
    pub fn new(every: u64, min_interval: Duration, offset: RunClock, started: Instant) -> StepPoints {
        StepPoints {
            every: every.max(1),
            min_interval,
            started,
            offset,
            last_point: None,
            step: offset.steps,
            images: offset.images,
            window_steps: 0,
            window_images: 0,
            window_loss: 0.0,
            window_hits: RowHits::default(),
        }
    }

    /// The run's clock at `now`: global steps, images seen and training seconds.
    pub fn clock(&self, now: Instant) -> RunClock {
        RunClock {
            steps: self.step,
            images: self.images,
            wall_seconds: self.offset.wall_seconds + now.saturating_duration_since(self.started).as_secs_f64(),
        }
    }

    /// Books one finished step of `images` images with mean loss `loss`; returns the point when
    /// one is due (the step is a multiple of `every` and the last point is old enough).
    pub fn record(
        &mut self,
        epoch: usize,
        loss: f32,
        images: usize,
        hits: RowHits,
        lr: f64,
        now: Instant,
    ) -> Option<TrainEvent> {
        self.step += 1;
        self.images += images as u64;
        self.window_steps += 1;
        self.window_images += images;
        self.window_loss += loss as f64 * images as f64;
        self.window_hits += hits;
        let due = self.step.is_multiple_of(self.every)
            && self
                .last_point
                .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if !due || self.window_images == 0 {
            return None;
        }
        self.last_point = Some(now);
        let ratio = |hits: usize, rows: usize| (rows > 0).then(|| hits as f64 / rows as f64);
        let point = TrainEvent::Step {
            step: self.step,
            epoch,
            window_steps: self.window_steps,
            loss: self.window_loss / self.window_images as f64,
            top1_accuracy: ratio(self.window_hits.top1_hits, self.window_hits.top1_rows),
            exact_match: ratio(self.window_hits.rows_exact, self.window_images),
            images: self.images,
            lr,
            wall_seconds: self.clock(now).wall_seconds,
        };
        self.window_steps = 0;
        self.window_images = 0;
        self.window_loss = 0.0;
        self.window_hits = RowHits::default();
        Some(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(rows: usize, right: usize) -> RowHits {
        RowHits {
            cells_right: 0,
            rows_exact: right,
            top1_hits: right,
            top1_rows: rows,
        }
    }

    #[test]
    fn interval_keeps_a_run_within_its_budget() {
        // (total steps, budget, expected interval, why)
        let cases = [
            (49_000, 2_000, 25, "ten NIH epochs at batch 16"),
            (2_000, 2_000, 1, "exactly the budget"),
            (2_001, 2_000, 2, "one step over: every second step"),
            (10, 2_000, 1, "a short run: every step"),
            (0, 2_000, 1, "no steps"),
            (100, 0, 100, "a zero budget counts as one point"),
        ];
        for (total, budget, expected, why) in cases {
            let every = step_interval(total, budget);
            assert_eq!(every, expected, "{why}");
            assert!(total / every <= budget.max(1) as u64, "{why}: over budget");
        }
    }

    #[test]
    fn points_average_their_window_weighted_by_images() {
        let t0 = Instant::now();
        let mut points = StepPoints::new(2, Duration::ZERO, RunClock::default(), t0);
        assert_eq!(
            points.record(1, 1.0, 10, hits(10, 5), 0.1, t0),
            None,
            "step 1 is not a multiple of 2"
        );
        let Some(TrainEvent::Step {
            step,
            window_steps,
            loss,
            top1_accuracy,
            exact_match,
            images,
            lr,
            ..
        }) = points.record(1, 4.0, 30, hits(30, 30), 0.2, t0)
        else {
            panic!("step 2 makes a point");
        };
        assert_eq!((step, window_steps, images), (2, 2, 40));
        // (1·10 + 4·30) / 40, not the mean of the two batch losses (2.5).
        assert!((loss - 3.25).abs() < 1e-12, "{loss}");
        assert_eq!(top1_accuracy, Some(35.0 / 40.0));
        assert_eq!(exact_match, Some(35.0 / 40.0));
        assert_eq!(lr, 0.2, "the window's last learning rate");
        // The next window starts empty.
        points.record(1, 2.0, 5, hits(0, 0), 0.2, t0);
        let Some(TrainEvent::Step {
            loss, top1_accuracy, ..
        }) = points.record(1, 2.0, 5, hits(0, 0), 0.2, t0)
        else {
            panic!("step 4 makes a point");
        };
        assert_eq!(loss, 2.0);
        assert_eq!(top1_accuracy, None, "no image with a positive label: undefined, not 0");
    }

    #[test]
    fn the_wall_interval_holds_points_back_without_losing_steps() {
        let t0 = Instant::now();
        let mut points = StepPoints::new(1, Duration::from_millis(500), RunClock::default(), t0);
        let mut made = Vec::new();
        // 1,000 steps 1 ms apart: a second of training.
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            if let Some(TrainEvent::Step { step, window_steps, .. }) =
                points.record(1, 1.0, 1, RowHits::default(), 0.1, now)
            {
                made.push((step, window_steps));
            }
        }
        assert_eq!(made, vec![(1, 1), (501, 500)], "one point per 500 ms");
        let counted: u64 = made.iter().map(|(_, w)| w).sum();
        assert_eq!(counted, 501, "every step up to the last point is in a window");
    }

    #[test]
    fn a_resumed_run_continues_its_step_images_and_clock() {
        let t0 = Instant::now();
        let offset = RunClock {
            steps: 300,
            images: 4_800,
            wall_seconds: 3_600.0,
        };
        let mut points = StepPoints::new(1, Duration::ZERO, offset, t0);
        let Some(TrainEvent::Step {
            step,
            images,
            wall_seconds,
            ..
        }) = points.record(4, 1.0, 16, RowHits::default(), 0.1, t0 + Duration::from_secs(2))
        else {
            panic!("every step makes a point");
        };
        assert_eq!((step, images), (301, 4_816));
        assert!((wall_seconds - 3_602.0).abs() < 1e-9, "{wall_seconds}");
    }
}
