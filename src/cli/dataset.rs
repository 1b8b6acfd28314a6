//! `cxr8 dataset ...`: the data set tools.

use clap::Subcommand;

use super::{cache, split, stats};

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Images, patients, per-label counts, co-occurrence, views, sex/age, missing images.
    Stats(stats::StatsArgs),
    /// Patient-disjoint train/val/test split written in the input's own format.
    Split(split::SplitArgs),
    /// Decode and resize every image once into a memory-mappable cache used by training.
    Cache(cache::CacheArgs),
}

pub fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Stats(args) => stats::run(args),
        DatasetCommand::Split(args) => split::run(args),
        DatasetCommand::Cache(args) => cache::run(args),
    }
}
