//! `cxr8 bench gradcam`: what the Predict page's default Grad-CAM costs. The default map is the
//! most probable label's whose map is not empty, so in the worst case every label's map is looked
//! at; this times that search (one backbone pass, then one head backward pass per label) against
//! one map and against computing each label's map from scratch.

use std::time::Instant;

use anyhow::Context;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;

use super::GradCamBenchArgs;
use crate::model::{Classifier, ModelSpec};
use crate::train::backend;
use crate::train::gradcam::{self, GradCamSearch, Head};

#[derive(Debug, Serialize)]
struct GradCamBench {
    device: String,
    model: String,
    size: usize,
    labels: usize,
    /// Best of `repeat`, in milliseconds.
    probabilities_ms: f64,
    one_map_ms: f64,
    /// Every label's map from one backbone pass (the default's worst case).
    search_all_ms: f64,
    /// Every label's map, each with its own backbone pass.
    separate_all_ms: f64,
}

/// Best wall time of `repeat` runs of `work`, after one untimed run, in milliseconds.
fn best_ms(repeat: usize, mut work: impl FnMut()) -> f64 {
    work();
    (0..repeat)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

pub(super) fn bench_gradcam(args: GradCamBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.size >= 32 && args.labels >= 1 && args.repeat >= 1,
        "--size must be at least 32 and --labels, --repeat at least 1"
    );
    let resolved = backend::resolve(args.device).context("choosing the device")?;
    eprintln!("{}", resolved.message);
    let device = resolved.kind.device();
    let spec = ModelSpec {
        architecture: args.model,
        ..ModelSpec::default()
    };
    let model = Classifier::new(&spec, args.labels, &device);
    let head = Head::from_model(&model).context("the model has no output layer `head`")?;
    let image = Tensor::<4>::random([1, 1, args.size, args.size], Distribution::Normal(0.0, 1.0), &device);
    let every_label: Vec<usize> = (0..args.labels).collect();
    let map = |features: Tensor<4>, label: usize| gradcam::grad_cam(&head, features, label, args.size, args.size);

    let probabilities_ms = best_ms(args.repeat, || {
        model.forward(image.clone()).into_data();
    });
    let one_map_ms = best_ms(args.repeat, || {
        let (_, features) = model.forward_with_features(image.clone());
        map(features, 0);
    });
    let search_all_ms = best_ms(args.repeat, || {
        let (_, features) = model.forward_with_features(image.clone());
        // Every map marked empty, so the search goes through all labels, as when all are empty.
        let search = GradCamSearch::run(&every_label, |label| {
            let mut heat = map(features.clone(), label);
            heat.empty = true;
            Ok::<_, ()>(heat)
        });
        assert_eq!(search.map(|s| s.computed.len()), Ok(args.labels));
    });
    let separate_all_ms = best_ms(args.repeat, || {
        for &label in &every_label {
            let (_, features) = model.forward_with_features(image.clone());
            map(features, label);
        }
    });
    let report = GradCamBench {
        device: match resolved.kind {
            backend::BackendKind::Cpu => format!("cpu, {} threads", backend::cpu_threads()),
            backend::BackendKind::Cuda(info) => format!("cuda:0 ({})", info.name),
        },
        model: args.model.name().to_string(),
        size: args.size,
        labels: args.labels,
        probabilities_ms,
        one_map_ms,
        search_all_ms,
        separate_all_ms,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} at {} px, {} labels, best of {} ({}):\n  probabilities only      {:>9.1} ms\n  one Grad-CAM            {:>9.1} ms\n  \
             every label, one pass   {:>9.1} ms  (the default's worst case)\n  every label, separately {:>9.1} ms",
            report.model,
            report.size,
            report.labels,
            args.repeat,
            report.device,
            report.probabilities_ms,
            report.one_map_ms,
            report.search_all_ms,
            report.separate_all_ms
        );
    }
    Ok(())
}
