//! Fault injection against the real `cxr8 serve` binary: SIGKILL at seeded random moments of a
//! training run (≥ 20 kills), a full disk under the checkpoints and under the image cache, and
//! image files going away. After every fault: nothing committed is lost or repeated, the store
//! passes `PRAGMA integrity_check`, and the server keeps serving. Counts go to RELIABILITY.md.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use cxr8::store::Store;
use cxr8::train::checkpoint::{RunCheckpoints, Slot};

use crate::util::{request, tiny_demo, Deadline, Server, SseEvent, SseStream};

/// A run small enough to train in about a second per epoch on two CPU cores.
fn tiny_run(name: &str, epochs: u32) -> Value {
    json!({
        "name": name,
        "model": "simple-cnn",
        "width": 0.25,
        "image_size": 64,
        "epochs": epochs,
        "batch_size": 16,
        "max_images": 100,
        "device": "cpu",
        "learning_rate": 0.003,
        "seed": 5,
    })
}

/// An epoch's metrics as the API shows them: without the event's `type` tag and the per-label
/// detail the run summary leaves out.
fn comparable(mut row: Value) -> Value {
    if let Some(map) = row.as_object_mut() {
        map.remove("type");
        map.remove("val_per_label");
    }
    row
}

fn epoch_number(event: &SseEvent) -> u64 {
    event.json()["epoch"]
        .as_u64()
        .expect("an epoch number in every epoch event")
}

/// The stored epochs of a run (from `GET /api/runs/{id}`), asserting they are 1..=n with no gap
/// or duplicate.
fn stored_epochs(server: &Server, id: &str) -> (Value, BTreeMap<u64, Value>) {
    let run = server.get_json(&format!("/api/runs/{id}"));
    let rows = run["epochs"].as_array().expect("an epochs array").clone();
    let numbers: Vec<u64> = rows.iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(
        numbers, expected,
        "stored epochs must be 1..=n, no gap or duplicate: {run}"
    );
    let by_number = rows
        .into_iter()
        .map(|e| (e["epoch"].as_u64().unwrap(), comparable(e["metrics"].clone())))
        .collect();
    (run, by_number)
}

/// Every epoch the client heard of is stored once with the same numbers.
fn assert_heard_epochs_stored(heard: &BTreeMap<u64, Value>, stored: &BTreeMap<u64, Value>, when: &str) {
    for (epoch, metrics) in heard {
        let row = stored
            .get(epoch)
            .unwrap_or_else(|| panic!("{when}: epoch {epoch} was announced but is not stored"));
        assert_eq!(row, metrics, "{when}: epoch {epoch} changed in the store");
    }
}

/// Opens the store of a stopped server and runs SQLite's integrity check.
fn assert_store_sound(data: &Path, when: &str) {
    let store = Store::open(data).unwrap_or_else(|e| panic!("{when}: the store does not open: {e}"));
    assert_eq!(store.integrity_check().unwrap(), "ok", "{when}");
}

/// What the client has heard of a run: the last event's sequence number (where a reconnect
/// resumes) and each epoch event's numbers.
#[derive(Default)]
struct Heard {
    epochs: BTreeMap<u64, Value>,
    last_seq: Option<i64>,
}

impl Heard {
    /// Notes an event: its sequence number, and an epoch event's numbers (at most once per epoch).
    fn hear(&mut self, event: &SseEvent, when: &str) {
        self.last_seq = Some(event.seq());
        if event.event == "epoch" {
            let epoch = epoch_number(event);
            let metrics = comparable(event.json());
            if let Some(before) = self.epochs.insert(epoch, metrics.clone()) {
                panic!("{when}: epoch {epoch} was announced twice:\n{before}\n{metrics}");
            }
        }
    }
}

/// Where a kill lands, relative to what the client sees of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// At once after posting the resume (job queued or preparing its data).
    Startup,
    /// On a batch-progress event of the training pass.
    Batch,
    /// Right after an epoch event (epoch committed; its checkpoint notices may still be coming).
    AfterEpoch,
    /// A random 0–600 ms after the epoch's last batch: validation, checkpoint write, recording.
    CheckpointWindow,
}

fn pick_moment(rng: &mut ChaCha8Rng) -> Moment {
    match rng.random_range(0..100) {
        0..10 => Moment::Startup,
        10..45 => Moment::Batch,
        45..70 => Moment::AfterEpoch,
        _ => Moment::CheckpointWindow,
    }
}

/// Reads `stream` until the chosen moment (then returns false: kill now) or the run's end
/// (returns true).
fn read_until_moment(
    server: &Server,
    id: &str,
    stream: &mut SseStream,
    moment: Moment,
    rng: &mut ChaCha8Rng,
    heard: &mut Heard,
    when: &str,
) -> bool {
    let deadline = Deadline::default_limit();
    let min_batch = rng.random_range(1..=4u64);
    let window_ms = rng.random_range(0..=600u64);
    if moment == Moment::Startup {
        return false;
    }
    loop {
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream.next_event(deadline)));
        let event = match next {
            Ok(event) => event.unwrap_or_else(|| panic!("{when}: the event stream ended before the run did")),
            Err(_) => {
                // Say where the run stands, so that a stall can be told from a slow machine.
                let run = server.get_json(&format!("/api/runs/{id}"));
                let queue = server.get_json("/api/runs")["queue"].clone();
                panic!(
                    "{when} ({moment:?}): no event in {:?}; the run is {} (epochs done {}, error {}), the queue {queue}",
                    crate::util::WAIT_LIMIT,
                    run["status"],
                    run["epochs_done"],
                    run["error"]
                );
            }
        };
        heard.hear(&event, when);
        if event.event == "done" {
            return true;
        }
        let payload = event.json();
        let kill = match moment {
            Moment::Startup => true,
            Moment::Batch => event.event == "progress" && payload["batch"].as_u64() >= Some(min_batch),
            Moment::AfterEpoch => event.event == "epoch",
            Moment::CheckpointWindow => event.event == "progress" && payload["batch"] == payload["of"],
        };
        if kill {
            if moment == Moment::CheckpointWindow {
                std::thread::sleep(std::time::Duration::from_millis(window_ms));
            }
            return false;
        }
    }
}

/// SIGKILLs the server at ≥ 20 seeded random moments of training runs, restarting and resuming
/// each time, until the runs finish. After every restart: every epoch the client heard of is
/// stored exactly once with the same numbers, stored epochs have no gap, the store is sound, the
/// run is `interrupted` (with a status event saying so) or still queued. At the end the event log
/// announces each epoch exactly once.
#[test]
fn kill_9_at_random_moments_loses_and_repeats_no_epoch() {
    const KILLS: usize = 22;
    const EPOCHS: u64 = 6;
    const SEED: u64 = 0x5EED_F417;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);

    let mut server = Server::start(&data, &ckpts);
    let mut runs_done = Vec::new();
    let mut id = server.submit(&tiny_run("soak 1", EPOCHS as u32));
    let mut heard = Heard::default();
    let mut kills: BTreeMap<Moment, usize> = BTreeMap::new();
    // A kill right after a submit or resume lands in the job's start (on the first run: in the
    // image cache build).
    let mut job_starting = true;
    let mut stream = server.events(&id, heard.last_seq);
    loop {
        let killed = kills.values().sum::<usize>();
        let when = format!("run {id}, after {killed} kills");
        let moment = if killed < KILLS {
            pick_moment(&mut rng)
        } else {
            // Enough kills: let the run finish.
            Moment::AfterEpoch
        };
        let moment = if moment == Moment::Startup && !job_starting {
            Moment::Batch
        } else {
            moment
        };
        let finished = if killed < KILLS {
            read_until_moment(&server, &id, &mut stream, moment, &mut rng, &mut heard, &when)
        } else {
            let rest = stream.until_done(Deadline::default_limit());
            for event in &rest {
                heard.hear(event, &when);
            }
            true
        };
        job_starting = false;
        if finished {
            let (run, stored) = stored_epochs(&server, &id);
            assert_eq!(run["status"], "done", "{when}: {}", run["error"]);
            assert_eq!(stored.len() as u64, EPOCHS, "{when}");
            assert_heard_epochs_stored(&heard.epochs, &stored, &when);
            // The whole stored event log announces each epoch exactly once, 1..=N in order.
            let log = server.events(&id, None).until_done(Deadline::default_limit());
            let announced: Vec<u64> = log.iter().filter(|e| e.event == "epoch").map(epoch_number).collect();
            assert_eq!(announced, (1..=EPOCHS).collect::<Vec<_>>(), "{when}: the event log");
            for event in log.iter().filter(|e| e.event == "epoch") {
                assert_eq!(comparable(event.json()), stored[&epoch_number(event)], "{when}");
            }
            let last = RunCheckpoints::new(&ckpts, &id)
                .read_state(Slot::Last)
                .unwrap()
                .unwrap();
            assert_eq!(last.epoch as u64, EPOCHS, "{when}: the last checkpoint");
            runs_done.push(id.clone());
            if killed >= KILLS {
                break;
            }
            // More kills to do: a new run.
            id = server.submit(&tiny_run(&format!("soak {}", runs_done.len() + 1), EPOCHS as u32));
            heard = Heard::default();
            stream = server.events(&id, None);
            job_starting = true;
            continue;
        }

        drop(stream);
        server.kill_hard();
        *kills.entry(moment).or_default() += 1;
        assert_store_sound(&data, &when);
        server = Server::start(&data, &ckpts);

        let (run, stored) = stored_epochs(&server, &id);
        assert_heard_epochs_stored(&heard.epochs, &stored, &when);
        let status = run["status"].as_str().unwrap_or_default().to_string();
        stream = server.events(&id, heard.last_seq);
        match status.as_str() {
            "interrupted" => {
                // Events stored before the kill that the client had not read yet come first
                // (committed epochs among them), then the restart's status event.
                let seen = stream.until(Deadline::default_limit(), "the interrupted status event", |e| {
                    e.event == "status" && e.json()["status"] == "interrupted"
                });
                for event in &seen {
                    heard.hear(event, &when);
                }
                let response = server.post_json(&format!("/api/runs/{id}/resume"), &json!({}));
                assert!(
                    (200..300).contains(&response.status),
                    "{when}: resume: {}",
                    response.text()
                );
                job_starting = true;
            }
            // Killed before the worker took the resumed job: the restart queues it again. Or
            // killed just after the last epoch, when the run had already finished.
            "queued" | "running" | "done" => {}
            other => panic!("{when}: after a kill the run is {other}: {}", run["error"]),
        }
    }
    let total: usize = kills.values().sum();
    assert!(total >= 20, "{total} kills");
    eprintln!(
        "kill -9 soak: {total} kills ({kills:?}), {} runs of {EPOCHS} epochs finished, 0 epochs lost or repeated",
        runs_done.len()
    );
    // An open event stream would hold the graceful shutdown.
    drop(stream);
    server.stop();
    assert_store_sound(&data, "after the soak");
    let temp_files: Vec<String> = std::fs::read_dir(data.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(
        temp_files.is_empty(),
        "cache builds killed midway leave no temp files: {temp_files:?}"
    );
}

/// A tmpfs mounted for one test and unmounted (lazily, so it cannot fail on a busy file) when
/// dropped. Needs root, as CI and the development machine have; fails loudly otherwise.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            output.status.success(),
            "the disk-full tests mount a small tmpfs and need root (CI runs as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` to the last byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let block = vec![0u8; chunk];
        while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
    }
    path
}

/// Bytes free for writing on the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs writes only into the zeroed struct; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) },
        0,
        "statvfs {}",
        dir.display()
    );
    stats.f_bavail as u64 * stats.f_frsize as u64
}

/// Takes every free block of the tmpfs holding `dir` with one `fallocate` and returns the
/// filler file. Unlike `fill`, which writes until a write fails, it never also takes space freed
/// once the disk is full: that is the store's reserve, given back to record the failure. A
/// server write between reading the free space and allocating it makes the (all-or-nothing, on
/// tmpfs) allocation fail; it is then tried again with the new figure.
fn fill_at_once(dir: &Path) -> PathBuf {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("filler");
    let file = std::fs::File::create(&path).unwrap();
    for _ in 0..1000 {
        let free = free_bytes(dir);
        assert!(free > 0, "the disk is already full");
        // A failed attempt fills the disk for an instant: a server write meeting it makes the
        // store give its reserve back. That space is the store's, to record the failure with;
        // taking it too would make the test fail the store, not check it.
        let reserve_given_back = !dir.join(cxr8::store::RESERVE_FILE).exists();
        let take = if reserve_given_back {
            free.saturating_sub(cxr8::store::RESERVE_BYTES)
        } else {
            free
        };
        if take == 0 {
            return path;
        }
        // SAFETY: the descriptor is open for writing for the duration of the call.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, take as libc::off_t) } {
            0 => return path,
            libc::ENOSPC => continue,
            code => panic!(
                "fallocate {}: {}",
                path.display(),
                std::io::Error::from_raw_os_error(code)
            ),
        }
    }
    panic!("the free space of {} kept changing", dir.display());
}

/// The disk under the store (the whole data folder) fills after epoch 1, so the next SQLite
/// write has no block for its WAL: the store gives back its reserve, the run fails saying the
/// store's disk is full and where, epoch 1 stays stored once and no later epoch is, the server
/// keeps serving and refuses new data with a 507 naming the disk; with space freed the run
/// resumes to the end (recording epoch 2 from its checkpoint) and a new run trains.
#[test]
fn a_full_disk_under_the_store_fails_the_run_with_its_failure_recorded() {
    const EPOCHS: u64 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    // The demo set (240 PNGs), its 64 px cache (about 1 MB), the store and its 2 MiB reserve.
    let _disk = Tmpfs::mount(&data, "16m");
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);
    let reserve = data.join(cxr8::store::RESERVE_FILE);
    let reserve_size = || std::fs::metadata(&reserve).map(|m| m.len()).ok();
    assert_eq!(
        reserve_size(),
        Some(cxr8::store::RESERVE_BYTES),
        "the store keeps a reserve"
    );
    let id = server.submit(&tiny_run("store disk full", EPOCHS as u32));
    let runs_before = server.get_json("/api/runs")["total"].clone();
    let mut stream = server.events(&id, None);
    let before = stream.until(Deadline::default_limit(), "epoch 1", |e| e.event == "epoch");
    let filler = fill_at_once(&data);

    let rest = stream.until_done(Deadline::default_limit());
    let done = rest.last().unwrap().json();
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["message"].as_str().unwrap();
    assert!(
        message.contains("could not record epoch 2")
            && message.contains("the run store's disk is full")
            && message.contains(&data.display().to_string())
            && message.contains("epoch 1 is stored and epoch 2's checkpoint is saved")
            && message.contains("free disk space there, then resume the run"),
        "{message}"
    );
    assert!(
        rest.iter().all(|e| e.event != "epoch"),
        "no epoch after the disk filled is announced"
    );
    assert_eq!(reserve_size(), None, "the reserve was given back to record the failure");

    assert_eq!(server.get("/").status, 200, "the server keeps serving");
    let (run, stored) = stored_epochs(&server, &id);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"].as_str(), Some(message));
    let announced: Vec<&SseEvent> = before.iter().filter(|e| e.event == "epoch").collect();
    assert_eq!(announced.len(), 1);
    assert_eq!(stored.len(), 1, "epoch 1 only: {run}");
    assert_eq!(stored[&1], comparable(announced[0].json()));

    // New data is refused, saying why, and nothing of it is stored.
    let response = server.post_json("/api/runs", &tiny_run("while the disk is full", 1));
    assert_eq!(response.status, 507, "{}", response.text());
    let refusal = response.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        refusal.starts_with("the run store's disk is full") && refusal.contains(&data.display().to_string()),
        "{refusal}"
    );
    let form = request(
        "POST",
        &format!("{}/runs/{id}/meta", server.url),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", server.url.as_str()),
        ],
        Some("name=renamed+while+full".as_bytes()),
    );
    assert_eq!(form.status, 507, "{}", form.text());
    assert!(form.text().contains("disk is full"), "{}", form.text());
    // The new-run form as its page renders it: 507, and the form comes back as filled in.
    let fields = crate::web_form::scrape_form(&server.get("/runs/new").text());
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let new_run = request(
        "POST",
        &format!("{}/runs", server.url),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", server.url.as_str()),
        ],
        Some(crate::util::encode_form(&pairs).as_bytes()),
    );
    assert_eq!(new_run.status, 507, "{}", new_run.text());
    assert!(
        new_run.text().contains("disk is full") && new_run.text().contains("<form id=\"new-run\""),
        "{}",
        new_run.text()
    );
    assert_eq!(server.get_json("/api/runs")["total"], runs_before, "no run was added");
    assert_eq!(server.get_json(&format!("/api/runs/{id}"))["name"], "store disk full");

    std::fs::remove_file(filler).unwrap();
    let response = server.post_json(&format!("/api/runs/{id}/resume"), &json!({}));
    assert!((200..300).contains(&response.status), "resume: {}", response.text());
    let resumed = stream.until_done(Deadline::default_limit());
    assert_eq!(resumed.last().unwrap().json()["status"], "done", "{:?}", resumed.last());
    assert_eq!(
        reserve_size(),
        Some(cxr8::store::RESERVE_BYTES),
        "the reserve is taken back once there is room"
    );
    let (_, stored) = stored_epochs(&server, &id);
    assert_eq!(stored.len() as u64, EPOCHS);
    assert_eq!(stored[&1], comparable(announced[0].json()), "epoch 1 unchanged");
    // The whole log: epoch 1, the failure, then the resumed run to its end.
    let log = server
        .events(&id, None)
        .until(Deadline::default_limit(), "the resumed run's end", |e| {
            e.event == "done" && e.json()["status"] == "done"
        });
    let announced: Vec<u64> = log.iter().filter(|e| e.event == "epoch").map(epoch_number).collect();
    assert_eq!(announced, (1..=EPOCHS).collect::<Vec<_>>(), "the event log");

    let second = server.submit(&tiny_run("after the store's disk filled", 1));
    let events = server.events(&second, None).until_done(Deadline::default_limit());
    assert_eq!(events.last().unwrap().json()["status"], "done", "{:?}", events.last());
    // An open event stream would hold the graceful shutdown.
    drop(stream);
    server.stop();
    assert_store_sound(&data, "after the store's disk filled");
}

/// The disk under the checkpoints fills after epoch 1: the run fails naming the checkpoint write,
/// epoch 1 stays stored and loadable, the server keeps serving; with space freed the run resumes
/// to the end and a new run trains.
#[test]
fn a_full_disk_during_a_checkpoint_fails_the_run_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    let _disk = Tmpfs::mount(&ckpts, "48m");
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);
    let id = server.submit(&tiny_run("disk full", 3));
    let mut stream = server.events(&id, None);
    // Epoch 1's checkpoint is complete once its best pointer is written.
    let before = stream.until(Deadline::default_limit(), "epoch 1's best checkpoint", |e| {
        e.event == "checkpoint" && e.json()["epoch"] == 1 && e.json()["best"] == true
    });
    let filler = fill(&ckpts);
    let rest = stream.until_done(Deadline::default_limit());
    let done = rest.last().unwrap().json();
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["message"].as_str().unwrap();
    assert!(
        message.contains("could not save epoch 2's checkpoint")
            && message.contains("No space left on device")
            && message.contains("free disk space, then resume"),
        "{message}"
    );
    assert!(
        rest.iter().all(|e| e.event != "epoch"),
        "epoch 2 must not be announced without its checkpoint"
    );

    assert_eq!(server.get("/").status, 200, "the server keeps serving");
    let (run, stored) = stored_epochs(&server, &id);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"].as_str(), Some(message));
    let announced: Vec<&SseEvent> = before.iter().filter(|e| e.event == "epoch").collect();
    assert_eq!(announced.len(), 1);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[&1], comparable(announced[0].json()));
    let last = RunCheckpoints::new(&ckpts, &id)
        .read_state(Slot::Last)
        .unwrap()
        .unwrap();
    assert_eq!(last.epoch, 1, "epoch 1's checkpoint is intact");

    std::fs::remove_file(filler).unwrap();
    let response = server.post_json(&format!("/api/runs/{id}/resume"), &json!({}));
    assert!((200..300).contains(&response.status), "resume: {}", response.text());
    let resumed = stream.until_done(Deadline::default_limit());
    assert_eq!(resumed.last().unwrap().json()["status"], "done");
    let (_, stored) = stored_epochs(&server, &id);
    assert_eq!(stored.len(), 3);

    let second = server.submit(&tiny_run("after the full disk", 1));
    let events = server.events(&second, None).until_done(Deadline::default_limit());
    assert_eq!(events.last().unwrap().json()["status"], "done");
    // An open event stream would hold the graceful shutdown.
    drop(stream);
    server.stop();
    assert_store_sound(&data, "after the full disk");
}

/// The image cache cannot be written (its disk is too small): the run fails saying so instead of
/// the memory-mapped write killing the server; once there is room, a run builds the cache and
/// trains.
#[test]
fn a_full_disk_during_the_cache_build_fails_the_run_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    // The tiny demo set's 64 px cache needs about 1 MB.
    let disk = Tmpfs::mount(&data.join("cache"), "256k");
    let server = Server::start(&data, &ckpts);
    let id = server.submit(&tiny_run("cache disk full", 1));
    let events = server.events(&id, None).until_done(Deadline::default_limit());
    let done = events.last().unwrap().json();
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reserve") && message.contains("image cache") && message.contains("No space left"),
        "{message}"
    );
    assert_eq!(server.get("/").status, 200, "the server keeps serving");
    let leftovers: Vec<_> = std::fs::read_dir(data.join("cache")).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "no half-written cache is left: {leftovers:?}");

    drop(disk);
    let second = server.submit(&tiny_run("cache with room", 1));
    let events = server.events(&second, None).until_done(Deadline::default_limit());
    assert_eq!(events.last().unwrap().json()["status"], "done", "{:?}", events.last());
    server.stop();
    assert_store_sound(&data, "after the cache disk filled");
}

/// Image files deleted or corrupted before a run reads them: the run fails naming them and how
/// to go on, the next queued run (allowing missing images) still trains; images deleted while a
/// run trains do not matter (training reads the cache).
#[test]
fn images_going_away_fail_or_skip_as_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    let own = cxr8::data::demo::generate(&cxr8::data::demo::DemoConfig {
        out: tmp.path().join("own"),
        images: 120,
        size: 64,
        seed: 3,
    })
    .unwrap();
    let images = own.out.join("images");
    let server = Server::start(&data, &ckpts);

    let mut files: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    std::fs::write(&files[2], b"\x89PNG\r\n\x1a\n but then nothing").unwrap();
    let with_data = |name: &str, allow_missing: bool| {
        let mut config = tiny_run(name, 1);
        config["labels"] = json!(own.label_file);
        config["images"] = json!(images);
        config["allow_missing_images"] = json!(allow_missing);
        config
    };
    // Both queued at once: the first fails, the worker goes on to the second.
    let strict = server.submit(&with_data("strict", false));
    let lenient = server.submit(&with_data("lenient", true));
    let events = server.events(&strict, None).until_done(Deadline::default_limit());
    let done = events.last().unwrap().json();
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["message"].as_str().unwrap();
    let name = |i: usize| files[i].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        message.contains("2 missing") && message.contains(&name(0)) && message.contains("--allow-missing"),
        "{message}"
    );
    let events = server.events(&lenient, None).until_done(Deadline::default_limit());
    assert_eq!(events.last().unwrap().json()["status"], "done", "{:?}", events.last());

    // Deleted mid-run: the cache already holds the pixels.
    let mid = server.submit(&with_data("mid-run", true));
    let mut stream = server.events(&mid, None);
    stream.until(Deadline::default_limit(), "training under way", |e| {
        e.event == "progress"
    });
    std::fs::remove_dir_all(&images).unwrap();
    let rest = stream.until_done(Deadline::default_limit());
    assert_eq!(rest.last().unwrap().json()["status"], "done", "{:?}", rest.last());
    assert_eq!(server.get("/").status, 200);
    // An open event stream would hold the graceful shutdown.
    drop(stream);
    server.stop();
    assert_store_sound(&data, "after images went away");
}
