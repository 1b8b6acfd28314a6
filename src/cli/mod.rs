//! Command-line interface: clap types, one file per command area, dispatch to the library.

use clap::{Parser, Subcommand};

mod cache;
mod dataset;
mod demo;
mod eval;
mod predict;
mod serve;
mod split;
mod stats;
mod train;
mod weights;

/// cxr8 — train, watch and compare chest X-ray classifiers (NIH ChestX-ray14 / CXR8).
#[derive(Debug, Parser)]
#[command(name = "cxr8", version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the dashboard (the default command).
    Serve(serve::ServeArgs),
    /// Generate the synthetic demo data set (NIH layout).
    Demo(demo::DemoArgs),
    /// Data set tools: stats, split, cache.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Train a model; the run is recorded in the store the dashboard shows.
    Train(Box<train::TrainArgs>),
    /// Metrics (AUROC, AP, F1, confusion counts) for predictions made by any model.
    Eval(eval::EvalArgs),
    /// Per-label probabilities (and Grad-CAM heat maps) for X-ray images from a trained run.
    Predict(predict::PredictArgs),
    /// Read PyTorch / torchvision weights into a checkpoint folder.
    Import(weights::ImportArgs),
    /// Write a checkpoint's weights as safetensors in torchvision's layout.
    Export(weights::ExportArgs),
    /// Throughput benchmarks (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line. The matches are kept beside the typed values because `train` needs
/// to know which flags were typed (they override a preset; defaults do not).
pub fn parse() -> (Cli, clap::ArgMatches) {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

pub fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Train(args)) => {
            let sub = matches.subcommand_matches("train").expect("train subcommand matched");
            train::run(*args, sub)
        }
        None => serve::run(serve::ServeArgs::default()),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Dataset(cmd)) => dataset::run(cmd),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Predict(args)) => predict::run(args),
        Some(Command::Import(args)) => weights::import(args),
        Some(Command::Export(args)) => weights::export(args),
        Some(Command::Bench(cmd)) => crate::bench::run(cmd),
    }
}
