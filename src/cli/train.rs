//! `cxr8 train`: one run from the command line, recorded in the same store the dashboard shows:
//! a progress bar per batch, a table row per epoch, a final summary (or one JSON object).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::service::runs;
use crate::store::Store;
use crate::train::job::JobPaths;
use crate::train::presets;
use crate::train::runner::{CancelHandle, Outcome};
use crate::train::{TrainConfig, TrainEvent};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Start from a named preset (quick-demo, school-project, chexnet, mobilenet-v2); flags override it.
    #[arg(long)]
    pub preset: Option<String>,
    /// Start from a run configuration file (TOML or JSON, the fields of `--json` output's "config").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue a cancelled or interrupted run from its last checkpoint (same configuration).
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Folder of the run store, demo data and caches.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Folder of checkpoints (one sub-folder per run).
    #[arg(long, default_value = "ckpts")]
    pub ckpt_dir: PathBuf,
    /// Print one JSON object at the end (config, every epoch's metrics, best epoch) instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainConfig,
}

/// The configuration a command line asks for: preset or file, then the flags actually typed.
pub fn resolve_config(args: &TrainArgs, matches: &clap::ArgMatches) -> anyhow::Result<TrainConfig> {
    let base = match (&args.preset, &args.config) {
        (Some(_), Some(_)) => bail!("give either --preset or --config, not both (flags override either)"),
        (Some(name), None) => presets::preset_or_error(name)?,
        (None, Some(path)) => read_config_file(path)?,
        (None, None) => TrainConfig::default(),
    };
    Ok(TrainConfig::with_cli_overrides(&base, &args.train, matches))
}

fn read_config_file(path: &PathBuf) -> anyhow::Result<TrainConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the run configuration {}", path.display()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?
    } else {
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
        serde_json::to_value(table)?
    };
    TrainConfig::from_json(&value.to_string()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {}: {}", e.field, e.message)).collect();
        anyhow::anyhow!("{} has invalid settings:\n{}", path.display(), lines.join("\n"))
    })
}

pub fn run(args: TrainArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let paths = JobPaths {
        data_dir: args.data_dir.clone(),
        ckpt_dir: args.ckpt_dir.clone(),
    };
    let _lock = crate::lock::DataDirLock::acquire(&paths.data_dir, crate::lock::Holder::Train)?;
    let store = Arc::new(Store::open(&paths.data_dir).context("cannot open the run store")?);
    let (run_id, config, resume) = match &args.resume {
        Some(id) => {
            let run = store
                .run(id)?
                .with_context(|| format!("no run with id '{id}' in {}", store.path().display()))?;
            let config = TrainConfig::from_json(&run.config.to_string())
                .map_err(|_| anyhow::anyhow!("run {id} has a configuration this cxr8 cannot read"))?;
            (id.clone(), config, true)
        }
        None => {
            let mut config = resolve_config(&args, matches)?;
            runs::resolve_dataset(&store, &mut config).map_err(|e| anyhow::anyhow!("--dataset: {}", e.message))?;
            if let Err(errors) = config.validate() {
                let lines: Vec<String> = errors
                    .iter()
                    .map(|e| format!("  --{}: {}", e.field.replace('_', "-"), e.message))
                    .collect();
                bail!("invalid training settings:\n{}", lines.join("\n"));
            }
            let id = runs::submit(&store, &config, &paths)?;
            (id, config, false)
        }
    };

    let display = Arc::new(Mutex::new(Display::new(args.json)));
    let listener_display = display.clone();
    let listener: runs::Listener = Box::new(move |event, _row| {
        listener_display.lock().unwrap_or_else(|p| p.into_inner()).show(event);
    });
    let progress_display = display.clone();
    let progress: crate::train::job::DataProgress = Arc::new(move |done, total| {
        progress_display
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .data_progress(done, total);
    });
    let cancel = CancelHandle::new();
    let outcome = runs::execute(
        store.clone(),
        &run_id,
        &config,
        &paths,
        resume,
        &cancel,
        runs::Watchers {
            events: Some(listener),
            data_progress: Some(progress),
        },
    );
    display.lock().unwrap_or_else(|p| p.into_inner()).finish();

    let run = store.run(&run_id)?.context("the run vanished from the store")?;
    let epochs = store.epochs(&run_id)?;
    if args.json {
        let summary = json!({
            "run_id": run_id,
            "status": run.status,
            "config": run.config,
            "device": run.device,
            "epochs": epochs.iter().map(|e| &e.metrics).collect::<Vec<_>>(),
            "best_epoch": run.best_epoch,
            "best_metric_name": run.best_metric_name,
            "best_metric": run.best_metric,
            "labels": labels_of(&epochs),
            "test": run.test,
            "error": run.error,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "run {run_id}: {} ({} epochs recorded in {})",
            run.status.as_str(),
            epochs.len(),
            store.path().display()
        );
        if let (Some(epoch), Some(name), Some(value)) = (run.best_epoch, &run.best_metric_name, run.best_metric) {
            eprintln!(
                "best epoch {epoch}: {name} = {value:.4}; checkpoints in {}",
                paths.ckpt_dir.join(&run_id).display()
            );
        }
    }
    match outcome {
        Ok(Outcome::Finished { .. }) => Ok(()),
        Ok(Outcome::Cancelled) => bail!("run {run_id} was cancelled"),
        Err(e) => Err(anyhow::Error::new(e).context(format!("run {run_id} failed"))),
    }
}

/// Terminal output: a bar while batches run, then one table row per epoch (stderr, so `--json`
/// output on stdout stays clean).
struct Display {
    quiet: bool,
    bar: Option<ProgressBar>,
    header_printed: bool,
}

impl Display {
    fn new(quiet: bool) -> Self {
        Display {
            quiet,
            bar: None,
            header_printed: false,
        }
    }

    fn bar(&mut self, len: usize, prefix: String) -> &ProgressBar {
        if self
            .bar
            .as_ref()
            .is_none_or(|b| b.length() != Some(len as u64) || b.prefix() != prefix)
        {
            if let Some(old) = self.bar.take() {
                old.finish_and_clear();
            }
            let bar = if self.quiet {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(len as u64)
            };
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(prefix);
            self.bar = Some(bar);
        }
        self.bar.as_ref().expect("just set")
    }

    fn data_progress(&mut self, done: usize, total: usize) {
        self.bar(total, "caching images".into()).set_position(done as u64);
    }

    fn show(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                run_id,
                device,
                num_params,
                first_epoch,
                ..
            } => {
                self.clear();
                if !self.quiet {
                    eprintln!("run {run_id} on {device}: {num_params} parameters, from epoch {first_epoch}");
                }
            }
            TrainEvent::WeightsLoaded { .. } => {
                if let (false, Some(summary)) = (self.quiet, event.weights_summary()) {
                    eprintln!("{summary}");
                }
            }
            TrainEvent::Batch {
                epoch,
                batch,
                of,
                loss,
                images_per_sec,
                ..
            } => {
                let bar = self.bar(*of, format!("epoch {epoch}"));
                bar.set_position(*batch as u64);
                bar.set_message(format!("loss {loss:.4} {images_per_sec:.0} img/s"));
            }
            TrainEvent::Epoch {
                epoch,
                train,
                val,
                lr,
                seconds,
                ..
            } => {
                self.clear();
                if self.quiet {
                    return;
                }
                if !self.header_printed {
                    eprintln!(
                        "{:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}",
                        "epoch", "train_loss", "val_loss", "val_auroc", "val_map", "val_acc", "lr", "secs"
                    );
                    self.header_printed = true;
                }
                let num = |v: &serde_json::Value, k: &str| {
                    v.get(k)
                        .and_then(|x| x.as_f64())
                        .map(|x| format!("{x:.4}"))
                        .unwrap_or_else(|| "-".into())
                };
                eprintln!(
                    "{epoch:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {lr:>9.2e} {seconds:>7.1}",
                    num(train, "loss"),
                    num(val, "loss"),
                    num(val, "mean_auroc"),
                    num(val, "map"),
                    num(val, "accuracy"),
                );
            }
            TrainEvent::Checkpoint { .. } | TrainEvent::Step { .. } => {}
            TrainEvent::Test { report } => {
                self.clear();
                if !self.quiet {
                    eprintln!("{}", test_line(report));
                }
            }
            TrainEvent::Finished {
                best_epoch,
                best_metric,
                stopped_early,
            } => {
                self.clear();
                if !self.quiet {
                    let early = if *stopped_early { " (stopped early)" } else { "" };
                    match (best_epoch, best_metric) {
                        (Some(e), Some(m)) => eprintln!("finished{early}: best epoch {e}, {m:.4}"),
                        _ => eprintln!("finished{early}"),
                    }
                }
            }
            TrainEvent::Failed { message } => {
                self.clear();
                eprintln!("failed: {message}");
            }
            TrainEvent::Cancelled => {
                self.clear();
                eprintln!("cancelled");
            }
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn finish(&mut self) {
        self.clear();
    }
}

/// One line of held-out results: mean AUROC with its interval, or why there are none.
fn test_line(report: &crate::train::heldout::TestReport) -> String {
    match (report.mean_auroc, report.mean_auroc_ci, &report.note) {
        (Some(mean), Some([lo, hi]), _) => format!(
            "test ({} images, best epoch {}): mean AUROC {mean:.4} (95 % CI {lo:.4}–{hi:.4}), mAP {}",
            report.images,
            report.epoch.map_or("-".to_string(), |e| e.to_string()),
            report.map.map_or("-".to_string(), |m| format!("{m:.4}"))
        ),
        (Some(mean), None, _) => format!("test ({} images): mean AUROC {mean:.4}", report.images),
        (None, _, Some(note)) => format!("test: {note}"),
        (None, _, None) => format!("test ({} images): AUROC undefined (one class only)", report.images),
    }
}

/// The run's label names in output order, from its last epoch's validation metrics.
fn labels_of(epochs: &[crate::store::EpochRow]) -> Vec<String> {
    epochs
        .last()
        .and_then(|e| e.metrics.get("val_per_label"))
        .and_then(|v| v.as_array())
        .map(|labels| {
            labels
                .iter()
                .filter_map(|l| l.get("label").and_then(|n| n.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
