//! `cxr8 demo`: generate the synthetic demo data set in NIH's layout.

use std::path::PathBuf;

use anyhow::Context;

use crate::data::demo::{self, DemoConfig};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output folder (replaced if it already holds a demo set).
    #[arg(long, default_value = "data/demo")]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 3000)]
    pub images: usize,
    /// Image width and height in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl Default for DemoArgs {
    fn default() -> Self {
        let config = DemoConfig::default();
        DemoArgs {
            out: config.out,
            images: config.images,
            size: config.size,
            seed: config.seed,
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = DemoConfig {
        out: args.out,
        images: args.images,
        size: args.size,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let report = demo::generate(&config)
        .with_context(|| format!("could not generate the demo data set in {}", config.out.display()))?;
    println!(
        "wrote {} synthetic images of {} patients to {} in {:.1} s",
        report.images,
        report.patients,
        report.out.display(),
        started.elapsed().as_secs_f64()
    );
    for (label, count) in &report.label_counts {
        println!("  {label:<20} {count:>6}");
    }
    println!("labels: {}", report.label_file.display());
    Ok(())
}
