//! The dashboard in a real browser: headless Debian Chromium driven over W3C WebDriver through
//! chromedriver, against the real `cxr8 serve` binary. Watches a run's page update live, starts a
//! second run with another model, and compares both. Screenshots go to
//! `target/browser-artifacts/` as test artefacts (also one at the moment a check fails).
//!
//! The WebDriver client is a few JSON calls over the test HTTP client: all this test needs, without
//! a WebDriver crate's dependency tree in every build.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::util::{request, tiny_demo, Deadline, Server};

const CHROMIUM_CANDIDATES: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER_CANDIDATES: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/browser-artifacts");
    dir
}

/// The first existing path of `candidates`, or a failure naming the Debian packages to install:
/// CI installs them, so a missing browser is a broken setup, not a reason to skip.
fn required_program(candidates: &[&str], what: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the browser test needs {what} (looked at {candidates:?}): install the Debian packages \
                 `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver`; .ci/run does)"
            )
        })
}

/// chromedriver started by this test plus one browser session; dropping it ends the session
/// (which closes Chromium) and kills the chromedriver it started.
struct Browser {
    driver: Option<Child>,
    session: String,
    name: &'static str,
}

impl Browser {
    fn start(name: &'static str) -> Browser {
        let chromium = required_program(&CHROMIUM_CANDIDATES, "Chromium");
        let chromedriver = required_program(&CHROMEDRIVER_CANDIDATES, "chromedriver");
        let mut child = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // Reads the port chromedriver chose, then keeps draining its output.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.split("started successfully on port ").nth(1) {
                    let _ = port_tx.send(port.trim().trim_end_matches('.').to_string());
                }
            }
        });
        let mut browser = Browser {
            driver: Some(child),
            session: String::new(),
            name,
        };
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromedriver did not report its port within 60 s");
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--window-size=1280,1000", "--no-first-run", "--no-default-browser-check"],
                },
            }}
        });
        let base = format!("http://127.0.0.1:{port}");
        let session = webdriver(&format!("{base}/session"), "POST", Some(&capabilities));
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id from chromedriver: {session}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        webdriver(&format!("{}{path}", self.session), method, body)
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    fn current_url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    fn find(&self, css: &str) -> String {
        self.find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches `{css}` on {}", self.current_url()))
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), Some(&json!({})));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
    }

    fn screenshot(&self, step: &str) -> PathBuf {
        let encoded = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 screenshot"))
            .expect("screenshot is base64");
        let path = artifacts_dir().join(format!("{}-{step}.png", self.name));
        std::fs::write(&path, png).expect("writing a screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            if std::thread::panicking() {
                let path = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.screenshot("failure")));
                if let Ok(path) = path {
                    eprintln!("browser screenshot at the failure: {}", path.display());
                }
            }
            // Ends the session, which closes the Chromium that chromedriver started for it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                request("DELETE", &self.session, &[], None)
            }));
        }
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One WebDriver command; returns its `value`, or fails with the driver's error message.
fn webdriver(url: &str, method: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string);
    let response = request(
        method,
        url,
        &[("Content-Type", "application/json")],
        body.as_deref().map(str::as_bytes),
    );
    let answer = response.json();
    if response.status != 200 {
        panic!(
            "WebDriver {method} {url} failed ({}): {} {}",
            response.status, answer["value"]["error"], answer["value"]["message"]
        );
    }
    answer["value"].clone()
}

/// What the run page shows, read in one round trip.
const RUN_PAGE_STATE: &str = r##"
const progress = document.getElementById("progress");
const status = document.getElementById("status");
return {
  progress: progress ? Number(progress.value) : null,
  status: status ? status.textContent.trim() : null,
  charts: Array.from(document.querySelectorAll("img.live-chart")).map(img => img.src),
  rows: document.querySelectorAll("#epochs tbody tr").length,
};
"##;

/// What the run page showed while the test watched it.
#[derive(Debug, Default)]
struct Watched {
    progress_while_running: Vec<f64>,
    chart_sources: Vec<Vec<String>>,
    rows: Vec<u64>,
    final_status: String,
}

/// Polls the open run page until its status badge says `done`, recording what changed.
fn watch_run_page(browser: &Browser, step: &str) -> Watched {
    let mut watched = Watched::default();
    let deadline = Deadline::default_limit();
    let mut shot = false;
    loop {
        let state = browser.script(RUN_PAGE_STATE);
        let status = state["status"].as_str().unwrap_or("").to_string();
        let charts: Vec<String> = state["charts"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        if watched.chart_sources.last() != Some(&charts) {
            watched.chart_sources.push(charts);
        }
        let rows = state["rows"].as_u64().unwrap_or(0);
        if watched.rows.last() != Some(&rows) {
            watched.rows.push(rows);
        }
        if status == "running" {
            if let Some(p) = state["progress"].as_f64() {
                if watched.progress_while_running.last() != Some(&p) {
                    watched.progress_while_running.push(p);
                }
                if !shot && p > 0.0 && rows > 0 {
                    browser.screenshot(&format!("{step}-live"));
                    shot = true;
                }
            }
        }
        if status == "done" || status == "failed" || status == "cancelled" {
            watched.final_status = status;
            browser.screenshot(&format!("{step}-finished"));
            return watched;
        }
        assert!(
            !deadline.passed(),
            "the run page never showed the run finished; last state {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_watched_live(watched: &Watched, epochs: u64) {
    assert_eq!(watched.final_status, "done", "{watched:?}");
    let progress = &watched.progress_while_running;
    assert!(
        progress.len() >= 2 && progress.windows(2).any(|w| w[1] > w[0]),
        "the progress bar should grow while the run trains: {watched:?}"
    );
    assert!(
        watched.chart_sources.len() >= 2 || watched.rows.len() >= 2,
        "a chart should refresh or the epoch table gain rows while the page is open: {watched:?}"
    );
    assert_eq!(
        watched.rows.last(),
        Some(&epochs),
        "one table row per epoch: {watched:?}"
    );
}

/// Quarter-width models on 100 images: seconds per epoch on two CPU cores. Values as typed into
/// the new-run form (field names = the JSON config's).
fn form_values(name: &str, model: &str, epochs: u32) -> Value {
    json!({
        "name": name,
        "model": model,
        "width": "0.25",
        "image_size": "64",
        "epochs": epochs.to_string(),
        "batch_size": "16",
        "max_images": "100",
        "device": "cpu",
        "seed": "3",
    })
}

/// Opens the new-run form from the runs page, picks the quick-demo preset, shrinks it, submits,
/// and returns the id of the run page the browser lands on.
fn start_run_from_form(browser: &Browser, server: &Server, values: &Value, step: &str) -> String {
    browser.goto(&server.url);
    browser.click("#new-run-link");
    let deadline = Deadline::default_limit();
    deadline.wait_for("the new-run form", || {
        (!browser.find_all("form#new-run").is_empty()).then_some(())
    });
    browser.click("a.preset[data-preset=\"quick-demo\"]");
    deadline.wait_for("the quick-demo preset to load", || {
        browser.current_url().contains("preset=quick-demo").then_some(())
    });
    // Typing into each field: set the value the way a user's edit would, then fire `input`.
    let filled = browser.call(
        "POST",
        "/execute/sync",
        Some(&json!({
            "script": "const values = arguments[0]; const missing = []; \
                for (const [name, value] of Object.entries(values)) { \
                  const field = document.querySelector('form#new-run [name=\"' + name + '\"]'); \
                  if (!field) { missing.push(name); continue; } \
                  field.value = value; field.dispatchEvent(new Event('input', {bubbles: true})); \
                } return missing;",
            "args": [values],
        })),
    );
    assert_eq!(filled, json!([]), "the form should have these fields");
    browser.screenshot(&format!("{step}-form"));
    browser.click("#start-run");
    let id = deadline.wait_for("the run page after submitting the form", || {
        let url = browser.current_url();
        let id = url.rsplit("/runs/").next()?.split(['?', '#']).next()?.to_string();
        (url.contains("/runs/") && !id.is_empty() && id != "new").then_some(id)
    });
    id
}

fn run_ids_on(server: &Server, name: &str) -> Option<String> {
    let runs = server.get_json("/api/runs");
    runs["runs"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["id"].as_str().map(String::from))
}

fn wait_until_done(server: &Server, id: &str) {
    Deadline::default_limit().wait_for(&format!("run {id} to finish"), || {
        let run = server.get_json(&format!("/api/runs/{id}"));
        match run["status"].as_str() {
            Some("done") => Some(()),
            Some("failed") | Some("cancelled") => panic!("run {id} ended {}: {}", run["status"], run["error"]),
            _ => None,
        }
    })
}

fn page_text(browser: &Browser) -> String {
    browser
        .script("return document.body.innerText;")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn browser_watches_a_run_live_and_compares_two() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);
    let browser = Browser::start("dashboard");

    browser.goto(&server.url);
    browser.screenshot("1-runs-empty");

    // The first run, started from the form: the browser lands on its page and follows it live.
    let first = start_run_from_form(
        &browser,
        &server,
        &form_values("browser simple-cnn", "simple-cnn", 3),
        "2-first",
    );
    let watched = watch_run_page(&browser, "2-run");
    assert_watched_live(&watched, 3);
    let run = server.get_json(&format!("/api/runs/{first}"));
    assert_eq!(run["name"], "browser simple-cnn", "{run}");
    assert_eq!(run["config"]["epochs"], 3, "the form's values reach the run: {run}");

    // A second run with another model, from the form too.
    let second = start_run_from_form(
        &browser,
        &server,
        &form_values("browser mobilenet", "mobilenet-v2", 2),
        "3-second",
    );
    assert_eq!(
        run_ids_on(&server, "browser mobilenet").as_deref(),
        Some(second.as_str())
    );
    wait_until_done(&server, &second);

    // Tick both on the runs list and compare them.
    browser.goto(&server.url);
    for id in [&first, &second] {
        browser.click(&format!("input[name=runs][value=\"{id}\"]"));
    }
    browser.screenshot("4-runs-selected");
    browser.click("#compare-button");
    let deadline = Deadline::default_limit();
    deadline.wait_for("the compare page", || {
        browser.current_url().contains("/compare").then_some(())
    });
    let text = page_text(&browser);
    for name in ["browser simple-cnn", "browser mobilenet"] {
        assert!(
            text.contains(name),
            "the compare page should name run '{name}':\n{text}"
        );
    }
    // Every chart image on the compare page loaded (a broken chart URL has no natural width).
    deadline.wait_for("the compare charts to load", || {
        let state = browser.script(
            "const imgs = Array.from(document.images); \
             return {count: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length};",
        );
        (state["count"].as_u64() > Some(0) && state["count"] == state["loaded"]).then_some(())
    });
    // Each run's confusion figure (the demo set is multi-label: every label's 2×2) side by side.
    let matrices =
        browser.script("return Array.from(document.querySelectorAll('#matrices ~ .matrices img')).map(i => i.src);");
    let matrices: Vec<String> = serde_json::from_value(matrices).unwrap();
    assert_eq!(matrices.len(), 2, "{matrices:?}");
    for id in [&first, &second] {
        let own = format!("/runs/{id}/charts/confusion.svg");
        assert!(matrices.iter().any(|src| src.contains(&own)), "{id}: {matrices:?}");
    }
    browser.screenshot("5-compare");
}

/// The page's images whose address contains `part`, each with whether it drew.
const IMAGES_LIKE: &str = "return Array.from(document.images).filter(i => i.src.includes(arguments[0]))     .map(i => ({src: i.src, drawn: i.complete && i.naturalWidth > 0}));";

fn images_like(browser: &Browser, part: &str) -> Vec<Value> {
    let found = browser.call(
        "POST",
        "/execute/sync",
        Some(&json!({"script": IMAGES_LIKE, "args": [part]})),
    );
    found.as_array().cloned().unwrap_or_default()
}

#[test]
fn browser_shows_a_single_label_runs_confusion_matrix_in_both_views() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    // One class per image, so the task is single-label (softmax over four classes).
    let images = data.join("demo").join("images");
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let classes = ["Atelectasis", "Effusion", "Mass", "Nodule"];
    let mut csv = format!("id,subject_id,{}\n", classes.join(","));
    for (i, name) in names.iter().enumerate() {
        let cells: Vec<&str> = (0..4).map(|c| if c == i % 4 { "1" } else { "0" }).collect();
        csv.push_str(&format!("{name},{},{}\n", i / 2, cells.join(",")));
    }
    let labels = tmp.path().join("single.csv");
    std::fs::write(&labels, csv).unwrap();
    let server = Server::start(&data, &ckpts);
    let id = server.submit(&json!({
        "name": "single-label matrix",
        "labels": labels,
        "images": images,
        "model": "simple-cnn",
        "width": 0.25,
        "image_size": 64,
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
    }));
    wait_until_done(&server, &id);
    let browser = Browser::start("matrix");
    browser.goto(&format!("{}/runs/{id}", server.url));
    let deadline = Deadline::default_limit();
    let drawn = |view: &'static str| {
        deadline.wait_for(&format!("the {view} matrix to draw"), || {
            let found = images_like(&browser, "charts/confusion.svg");
            (found.len() == 1 && found[0]["drawn"] == true && found[0]["src"].as_str()?.contains(view)).then_some(())
        })
    };
    drawn("view=counts");
    let text = page_text(&browser);
    assert!(text.contains("Confusion matrix (rows: actual class"), "{text}");
    browser.screenshot("matrix-counts");
    browser.click("a[href*=\"view=recall\"]");
    drawn("view=recall");
    assert!(page_text(&browser).contains("show counts"));
    browser.screenshot("matrix-recall");
}

/// What the run page's charts and axis choice are, read in one round trip.
const AXIS_STATE: &str = r##"
const select = document.getElementById("x-axis");
const loss = Array.from(document.querySelectorAll("img.live-chart")).find(img => img.src.includes("/charts/loss.svg"));
return {
  axis: select ? select.value : null,
  status: (document.getElementById("status") || {}).textContent,
  rows: document.querySelectorAll("#epochs tbody tr").length,
  loss: loss ? loss.src : null,
  charts: Array.from(document.querySelectorAll("img.live-chart")).map(img => img.src),
  address: window.location.href,
};
"##;

/// Points the SVG's step line draws (a lone point is a circle; the legend's sample line has 2).
fn drawn_points(svg: &str) -> usize {
    crate::steps::longest_polyline(svg).max(usize::from(svg.contains("<circle")))
}

#[test]
fn browser_switches_a_live_run_to_the_step_axis_and_sees_its_first_epoch_grow() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);
    let browser = Browser::start("steps");
    // One image a step at 128 px: a first epoch of ~170 steps that lasts about 20 s on two cores
    // (the test ends with it), with a step point at most every half second and a chart reload
    // at most every 2 s.
    let id = server.submit(&json!({
        "name": "browser step axis",
        "model": "simple-cnn",
        "width": 1.0,
        "image_size": 128,
        "epochs": 2,
        "batch_size": 1,
        "device": "cpu",
        "seed": 3,
    }));
    browser.goto(&format!("{}/runs/{id}", server.url));
    let deadline = Deadline::default_limit();
    deadline.wait_for("the run page to show the run training", || {
        let state = browser.script(AXIS_STATE);
        (state["status"].as_str().map(str::trim) == Some("running")).then_some(())
    });
    let before = browser.script(AXIS_STATE);
    assert_eq!(
        before["axis"], "epoch",
        "a fresh browser starts on the epoch axis: {before}"
    );
    assert_eq!(
        before["rows"], 0,
        "the switch should happen in the first epoch: {before}"
    );

    // The user picks "step": every chart moves to the step axis at once, and the address says so.
    browser.script(
        "const s = document.getElementById('x-axis'); s.value = 'step'; \
         s.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    let switched = browser.script(AXIS_STATE);
    let charts: Vec<&str> = switched["charts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !charts.is_empty() && charts.iter().all(|src| src.contains("x=step")),
        "{switched}"
    );
    assert!(switched["address"].as_str().unwrap().contains("x=step"), "{switched}");

    // Within the first epoch the loss chart reloads on step events and draws more points.
    let mut drawn: Vec<usize> = Vec::new();
    let mut last_src = String::new();
    loop {
        let state = browser.script(AXIS_STATE);
        if state["rows"].as_u64() != Some(0) || state["status"].as_str().map(str::trim) != Some("running") {
            break;
        }
        let src = state["loss"].as_str().unwrap_or_default().to_string();
        if src != last_src {
            let path = src
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]));
            let svg = server.get(path.expect("a chart address")).text();
            // Before the first step point the chart has no step line yet.
            drawn.push(if svg.contains("train, per step") {
                drawn_points(&svg)
            } else {
                0
            });
            last_src = src;
            if drawn.len() == 3 {
                browser.screenshot("1-step-axis-live");
            }
        }
        assert!(!deadline.passed(), "the first epoch never ended; drawn {drawn:?}");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        drawn.len() >= 3 && drawn.windows(2).all(|w| w[1] >= w[0]) && drawn[drawn.len() - 1] > drawn[1].max(2),
        "the step chart should reload and grow during the first epoch: points drawn per reload {drawn:?}"
    );

    // Opened afresh, without ?x=, the run page comes back on the remembered step axis; the
    // compare page keeps its own choice.
    browser.goto(&format!("{}/runs/{id}", server.url));
    deadline.wait_for("the remembered axis", || {
        let state = browser.script(AXIS_STATE);
        let charts = state["charts"].as_array()?;
        (state["axis"] == "step" && charts.iter().all(|c| c.as_str().is_some_and(|s| s.contains("x=step"))))
            .then_some(())
    });
    browser.goto(&format!("{}/compare?runs={id}", server.url));
    let compare = browser.script(AXIS_STATE);
    assert_eq!(compare["axis"], "epoch", "{compare}");
    browser.screenshot("2-compare-epoch-axis");
}
