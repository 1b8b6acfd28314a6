//! The job queue behind the dashboard: runs wait in FIFO order and one dedicated worker thread
//! trains them one at a time (one GPU/CPU job at a time), never on the async runtime. A panic in
//! a job fails that run, not the worker.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{runs, Error};
use crate::store::{EventRow, RunStatus, Store};
use crate::train::job::JobPaths;
use crate::train::runner::{CancelHandle, Outcome};
use crate::train::{FieldError, TrainConfig, TrainEvent};

/// Hears every stored event (for the dashboard's live broadcast).
pub type EventListener = Arc<dyn Fn(&EventRow) + Send + Sync>;

struct Job {
    run_id: String,
    resume: bool,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Job>,
    running: Option<(String, CancelHandle)>,
    shutdown: bool,
}

/// What the worker does with a job: `runs::execute`, or a stand-in in the tests below.
type Executor = Box<
    dyn Fn(
            Arc<Store>,
            &str,
            &TrainConfig,
            &JobPaths,
            bool,
            &CancelHandle,
            runs::Listener,
        ) -> crate::train::Result<Outcome>
        + Send
        + Sync,
>;

struct Shared {
    store: Arc<Store>,
    paths: JobPaths,
    state: Mutex<State>,
    wake: Condvar,
    listener: EventListener,
    execute: Executor,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the queue; clones share it.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl Queue {
    /// Starts the worker thread. Runs left `queued` in the store by an earlier process are queued
    /// again, oldest first; one that was queued to resume (it has a checkpoint) still resumes.
    pub fn start(store: Arc<Store>, paths: JobPaths, listener: EventListener) -> std::io::Result<Queue> {
        let execute: Executor = Box::new(|store, run_id, config, paths, resume, cancel, listener| {
            runs::execute(
                store,
                run_id,
                config,
                paths,
                resume,
                cancel,
                runs::Watchers {
                    events: Some(listener),
                    data_progress: None,
                },
            )
        });
        Self::start_with(store, paths, listener, execute)
    }

    fn start_with(
        store: Arc<Store>,
        paths: JobPaths,
        listener: EventListener,
        execute: Executor,
    ) -> std::io::Result<Queue> {
        let mut state = State::default();
        if let Ok(runs) = store.runs() {
            for run in runs.iter().rev().filter(|r| r.status == RunStatus::Queued) {
                state.waiting.push_back(Job {
                    run_id: run.id.clone(),
                    resume: has_checkpoint(&paths, &run.id),
                });
            }
        }
        let shared = Arc::new(Shared {
            store,
            paths,
            state: Mutex::new(state),
            wake: Condvar::new(),
            listener,
            execute,
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("cxr8-worker".into())
            .spawn(move || work(worker))?;
        Ok(Queue { shared })
    }

    /// Validates a config, records it as a queued run and queues it.
    pub fn submit(&self, mut config: TrainConfig) -> Result<String, Vec<FieldError>> {
        runs::resolve_dataset(&self.shared.store, &mut config).map_err(|e| vec![e])?;
        config.validate()?;
        let id = runs::submit(&self.shared.store, &config, &self.shared.paths).map_err(|e| {
            vec![FieldError {
                field: "store".into(),
                message: e.to_string(),
            }]
        })?;
        self.push(Job {
            run_id: id.clone(),
            resume: false,
        });
        Ok(id)
    }

    fn push(&self, job: Job) {
        self.shared.state().waiting.push_back(job);
        self.shared.wake.notify_all();
    }

    /// Stops a running run between batches, or takes a queued one off the queue.
    pub fn cancel(&self, id: &str) -> Result<(), Error> {
        let mut state = self.shared.state();
        if let Some((running, handle)) = &state.running {
            if running == id {
                handle.cancel();
                return Ok(());
            }
        }
        if let Some(pos) = state.waiting.iter().position(|j| j.run_id == id) {
            state.waiting.remove(pos);
            drop(state);
            return self
                .shared
                .store
                .set_status(id, RunStatus::Cancelled, Some("cancelled before it started"))
                .map_err(Error::from);
        }
        match self.shared.store.run(id) {
            Ok(None) => Err(Error::UnknownRun(id.into())),
            Ok(Some(run)) => Err(Error::Conflict(format!(
                "run {id} is {}, not queued or running",
                run.status.as_str()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Queues an interrupted, cancelled or failed run again; it continues from its last
    /// checkpoint when it has one.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let run = self.shared.store.run(id)?;
        let run = run.ok_or_else(|| Error::UnknownRun(id.into()))?;
        if !matches!(
            run.status,
            RunStatus::Interrupted | RunStatus::Cancelled | RunStatus::Failed
        ) {
            return Err(Error::Conflict(format!(
                "run {id} is {}: only interrupted, cancelled or failed runs can be resumed",
                run.status.as_str()
            )));
        }
        let resume = has_checkpoint(&self.shared.paths, id);
        self.shared.store.set_status(id, RunStatus::Queued, None)?;
        self.push(Job {
            run_id: id.into(),
            resume,
        });
        Ok(())
    }

    /// The running run (if any) and then the waiting ones, in training order.
    pub fn queue(&self) -> Vec<String> {
        let state = self.shared.state();
        state
            .running
            .iter()
            .map(|(id, _)| id.clone())
            .chain(state.waiting.iter().map(|j| j.run_id.clone()))
            .collect()
    }

    /// Cancels the running job and stops the worker after it (used at shutdown).
    pub fn shutdown(&self) {
        let mut state = self.shared.state();
        state.shutdown = true;
        if let Some((_, handle)) = &state.running {
            handle.cancel();
        }
        self.shared.wake.notify_all();
    }
}

/// Whether a run has a last-epoch checkpoint to continue from.
fn has_checkpoint(paths: &JobPaths, run_id: &str) -> bool {
    use crate::train::checkpoint::{RunCheckpoints, Slot};
    matches!(
        RunCheckpoints::new(&paths.ckpt_dir, run_id).slot_dir(Slot::Last),
        Ok(Some(_))
    )
}

fn work(shared: Arc<Shared>) {
    loop {
        let (job, cancel) = {
            let mut state = shared.state();
            loop {
                if state.shutdown {
                    return;
                }
                if let Some(job) = state.waiting.pop_front() {
                    let cancel = CancelHandle::new();
                    state.running = Some((job.run_id.clone(), cancel.clone()));
                    break (job, cancel);
                }
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        run_one(&shared, &job, &cancel);
        shared.state().running = None;
    }
}

fn run_one(shared: &Shared, job: &Job, cancel: &CancelHandle) {
    let store = shared.store.clone();
    let fail = |message: String| {
        tracing::error!("run {}: {message}", job.run_id);
        let _ = store.set_status(&job.run_id, RunStatus::Failed, Some(&message));
        let payload = serde_json::to_value(TrainEvent::Failed { message }).expect("events serialise");
        if let Ok(seq) = store.append_event(&job.run_id, "done", &payload) {
            (shared.listener)(&EventRow {
                seq,
                run_id: job.run_id.clone(),
                kind: "done".into(),
                payload,
                at: crate::store::now(),
            });
        }
    };
    let config = match store.run(&job.run_id) {
        Ok(Some(run)) => match TrainConfig::from_json(&run.config.to_string()) {
            Ok(config) => config,
            Err(errors) => return fail(format!("stored configuration is invalid: {errors:?}")),
        },
        Ok(None) => return, // deleted while it waited
        Err(e) => return fail(e.to_string()),
    };
    let listener = shared.listener.clone();
    let forward: runs::Listener = Box::new(move |_event, row| listener(row));
    let result = catch_unwind(AssertUnwindSafe(|| {
        (shared.execute)(
            store.clone(),
            &job.run_id,
            &config,
            &shared.paths,
            job.resume,
            cancel,
            forward,
        )
    }));
    match result {
        Ok(Ok(_)) => {}
        // The engine has already recorded the failure event and status.
        Ok(Err(e)) => tracing::warn!("run {} ended with an error: {e}", job.run_id),
        Err(panic) => {
            let message = crate::train::backend::panic_message(panic.as_ref());
            fail(format!("the training job crashed: {message}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;
    use std::time::{Duration, Instant};

    fn queued_run(store: &Store, name: &str) -> String {
        let config = serde_json::to_value(TrainConfig {
            name: Some(name.into()),
            ..TrainConfig::default()
        })
        .unwrap();
        store
            .create_run(&NewRun {
                name,
                config: &config,
                dataset: "demo",
                model: "m",
                image_size: 64,
                epochs_planned: 1,
                tags: &[],
            })
            .unwrap()
    }

    fn wait_for_status(store: &Store, id: &str, want: RunStatus) -> crate::store::Run {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = store.run(id).unwrap().unwrap();
            if run.status == want {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} stayed {:?}, wanted {want:?}",
                run.status
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_panicking_job_fails_its_run_and_the_worker_runs_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        // Queued before the queue starts, so both are picked up from the store in order.
        let boom = queued_run(&store, "boom");
        let fine = queued_run(&store, "fine");
        let heard: Arc<Mutex<Vec<EventRow>>> = Arc::default();
        let sink = heard.clone();
        let execute: Executor = Box::new(|store, run_id, config, _paths, _resume, _cancel, _listener| {
            if config.name.as_deref() == Some("boom") {
                panic!("index out of bounds: the len is 3 but the index is 7");
            }
            store.set_status(run_id, RunStatus::Done, None).unwrap();
            Ok(Outcome::Cancelled)
        });
        let paths = JobPaths {
            data_dir: dir.path().into(),
            ckpt_dir: dir.path().join("ckpts"),
        };
        let queue = Queue::start_with(
            store.clone(),
            paths,
            Arc::new(move |row| sink.lock().unwrap().push(row.clone())),
            execute,
        )
        .unwrap();

        let failed = wait_for_status(&store, &boom, RunStatus::Failed);
        let message = failed.error.unwrap_or_default();
        assert!(
            message.contains("the training job crashed") && message.contains("the index is 7"),
            "{message}"
        );
        wait_for_status(&store, &fine, RunStatus::Done);
        let heard = heard.lock().unwrap();
        assert!(
            heard
                .iter()
                .any(|e| e.run_id == boom && e.kind == "done" && e.payload["message"] == message.as_str()),
            "the failure is broadcast: {heard:?}"
        );
        let stored = store.events_after(&boom, 0).unwrap();
        assert_eq!(stored.last().map(|e| e.kind.as_str()), Some("done"));
        queue.shutdown();
    }
}
