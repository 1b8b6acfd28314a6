//! `cxr8 bench train`, `bench augment` and `bench web` through the binary: tiny runs that prove the
//! commands measure and report, never how fast (speed lives in BENCHMARKS.md).

use std::process::Command;

fn cxr8(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cxr8"))
        .args(args)
        .output()
        .expect("the cxr8 binary runs")
}

#[test]
fn bench_train_reports_throughput_and_peak_memory_as_json() {
    let out = cxr8(&[
        "bench",
        "train",
        "--model",
        "simple-cnn",
        "--size",
        "32",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--width",
        "0.125",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let ours = &report["cxr8"];
    assert_eq!(ours["model"], "simple-cnn");
    assert_eq!(ours["batch"], 2);
    for key in ["train_images_per_s", "infer_images_per_s", "train_ms_per_step"] {
        let value = ours[key].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "{key}: {report}");
    }
    assert!(ours["final_loss"].as_f64().is_some_and(f64::is_finite), "{report}");
    assert!(ours["peak_rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{report}");
    // Without --reference PyTorch is not run.
    assert!(report.get("pytorch").is_none() && report.get("pytorch_error").is_none());
}

#[test]
fn bench_train_refuses_bad_settings_with_a_message() {
    let out = cxr8(&[
        "bench",
        "train",
        "--model",
        "simple-cnn",
        "--steps",
        "0",
        "--device",
        "cpu",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--steps"), "{stderr}");
    let out = cxr8(&["bench", "train", "--width=-1", "--device", "cpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--width"));
}

#[test]
fn bench_augment_prints_images_per_second() {
    let out = cxr8(&[
        "bench",
        "augment",
        "--size",
        "32",
        "--batch",
        "4",
        "--batches",
        "3",
        "--workers",
        "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("images/s") && stdout.contains("batch 4"), "{stdout}");
}

/// `cxr8 bench web` with its default trainer, real training: a tiny store, 3 SSE clients, one-epoch
/// runs on a 100-image demo set. The bench fails on any page that does not answer 200, so success
/// means every page, chart and API page was served; the training half is the path whose warm-up
/// run once refused to start.
#[test]
fn bench_web_times_every_page_sse_and_real_training() {
    let out = cxr8(&[
        "bench",
        "web",
        "--runs",
        "5",
        "--epochs",
        "3",
        "--list-epochs",
        "2",
        "--compare",
        "2",
        "--sse-clients",
        "3",
        "--iterations",
        "2",
        "--sse-epochs",
        "3",
        "--demo-images",
        "100",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["config"]["trainer"], "real");
    assert!(
        report["training_unit"].as_str().unwrap().starts_with("images/s"),
        "{report}"
    );
    for key in ["training_idle", "training_with_clients"] {
        let value = report[key].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{key}: {value}");
    }
    assert!(report["store_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["sse_latency"]["samples"], 3);
    for side in ["in_process", "loopback"] {
        let timings = report[side].as_array().unwrap();
        let names: Vec<&str> = timings.iter().map(|t| t["what"].as_str().unwrap()).collect();
        for page in ["runs page (/)", "run page", "compare page", "GET /api/runs (first 100)"] {
            assert!(names.contains(&page), "{side} lacks {page}: {names:?}");
        }
        if side == "in_process" {
            assert!(names.contains(&"runs page right after a run changed"), "{names:?}");
        }
        for timing in timings {
            assert_eq!(timing["samples"], 2, "{timing}");
            assert!(timing["median_ms"].as_f64().unwrap() > 0.0, "{timing}");
        }
    }
}
