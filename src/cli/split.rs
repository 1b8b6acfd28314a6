//! `cxr8 dataset split`: patient-disjoint train/val/test files in the input's own format.
//! The strategies are documented in `data::split`.

use std::path::PathBuf;

use anyhow::Context;

use crate::data::split::{self, Split, SplitOptions, Strategy};
use crate::data::LabelTable;

#[derive(Debug, clap::Args)]
pub struct SplitArgs {
    /// Label file: NIH Data_Entry_2017*.csv (also .gz), Kaggle sample_labels.csv or a one-hot CSV.
    #[arg(long)]
    pub labels: PathBuf,
    /// Image folder: rows whose image is not there are left out (for partial downloads).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// patient: seeded, label-stratified by patient; official: NIH's train_val/test lists;
    /// balanced: up to --per-class images per label.
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Share of all images for validation [default: 0.1].
    #[arg(long)]
    pub val: Option<f64>,
    /// Share of all images for test [default: 0.2]; not with --strategy official.
    #[arg(long)]
    pub test: Option<f64>,
    /// Images per label for --strategy balanced ("No Finding" counts as a label).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Random seed: the same seed gives the same split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder with NIH's train_val_list.txt and test_list.txt [default: the label file's folder].
    #[arg(long)]
    pub lists: Option<PathBuf>,
    /// Output folder for train.csv, val.csv, test.csv and split.json.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SplitArgs) -> anyhow::Result<()> {
    let defaults = SplitOptions::default();
    if args.strategy == Strategy::Official && args.test.is_some() {
        anyhow::bail!("--test does not apply to --strategy official: the test split is NIH's test_list.txt");
    }
    if args.strategy != Strategy::Balanced && args.per_class.is_some() {
        anyhow::bail!("--per-class only applies to --strategy balanced");
    }
    if args.strategy != Strategy::Official && args.lists.is_some() {
        anyhow::bail!("--lists only applies to --strategy official");
    }
    let options = SplitOptions {
        strategy: args.strategy,
        val_fraction: args.val.unwrap_or(defaults.val_fraction),
        test_fraction: args.test.unwrap_or(defaults.test_fraction),
        per_class: args.per_class,
        seed: args.seed,
        lists_dir: args.lists,
        images_dir: args.images,
    };
    let table =
        LabelTable::load(&args.labels).with_context(|| format!("reading label file {}", args.labels.display()))?;
    let result = split::split(&table, &options).context("splitting the data set")?;
    let written = split::write(&table, &result, &args.out)
        .with_context(|| format!("writing the split to {}", args.out.display()))?;
    print!("{}", render(&result));
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Images, patients and per-label counts per split, side by side.
pub fn render(split: &Split) -> String {
    use std::fmt::Write;
    let r = &split.report;
    let mut out = String::new();
    let w = &mut out;
    let strategy = serde_json::to_value(r.strategy).ok();
    let strategy = strategy.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
    let _ = writeln!(w, "strategy {strategy}, seed {}", r.seed);
    if r.missing_on_disk > 0 {
        let _ = writeln!(w, "left out {} rows whose image is not on disk", r.missing_on_disk);
    }
    if r.not_in_lists > 0 {
        let _ = writeln!(w, "left out {} rows that are in neither official list", r.not_in_lists);
    }
    let width = r.parts[0].labels.iter().map(|(l, _)| l.len()).max().unwrap_or(8).max(8);
    let _ = write!(w, "\n  {:<width$}", "");
    for p in &r.parts {
        let _ = write!(w, "  {:>8}", p.name);
    }
    let _ = writeln!(w);
    let row = |w: &mut String, name: &str, values: Vec<usize>| {
        let _ = write!(w, "  {name:<width$}");
        for v in values {
            let _ = write!(w, "  {v:>8}");
        }
        let _ = writeln!(w);
    };
    row(w, "images", r.parts.iter().map(|p| p.images).collect());
    row(w, "patients", r.parts.iter().map(|p| p.patients).collect());
    let _ = writeln!(w, "  {}", "-".repeat(width + 30));
    for (i, (label, _)) in r.parts[0].labels.iter().enumerate() {
        row(w, label, r.parts.iter().map(|p| p.labels[i].1).collect());
    }
    if !r.shortfalls.is_empty() {
        let _ = writeln!(w, "\nlabels with fewer images than asked for:");
        for s in &r.shortfalls {
            let _ = writeln!(w, "  {:<width$}  {:>6} of {}", s.label, s.got, s.wanted);
        }
    }
    out
}
