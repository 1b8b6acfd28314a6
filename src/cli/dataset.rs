//! `cxr8 dataset ...`: the data set tools, and registering data sets by name (`add`, `list`,
//! `remove`) in the same store the dashboard uses.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::{cache, split, stats};
use crate::service::datasets::{self, Registration, Summary};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Images, patients, per-label counts, co-occurrence, views, sex/age, missing images.
    Stats(stats::StatsArgs),
    /// Patient-disjoint train/val/test split written in the input's own format.
    Split(split::SplitArgs),
    /// Decode and resize every image once into a memory-mappable cache used by training.
    Cache(cache::CacheArgs),
    /// Register a label file and image folder under a name (then train with `--dataset NAME`).
    Add(AddArgs),
    /// The built-in demo and the registered data sets.
    List(ListArgs),
    /// Forget a registered data set (its files stay where they are).
    Remove(RemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Name: 1–80 letters, digits, - and _.
    pub name: String,
    /// Label file: NIH Data_Entry_2017*.csv (also .gz), Kaggle sample_labels.csv or one-hot CSV.
    #[arg(long)]
    pub labels: PathBuf,
    /// Validation label file: with --test-labels, the split is the three files as given
    /// (NIH-CXR-LT's train / val / test CSVs) instead of a split of --labels.
    #[arg(long, requires = "test_labels")]
    pub val_labels: Option<PathBuf>,
    /// Test label file (with --val-labels).
    #[arg(long, requires = "val_labels")]
    pub test_labels: Option<PathBuf>,
    /// Image folder (flat, or NIH's images_001 … images_012); default: the label file's folder.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Register even when some listed images are missing (training uses the ones found).
    #[arg(long)]
    pub allow_missing: bool,
    /// Folder of the run store (as `cxr8 serve --data-dir`).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Folder of the run store (as `cxr8 serve --data-dir`).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    pub name: String,
    /// Folder of the run store (as `cxr8 serve --data-dir`).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

pub fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Stats(args) => stats::run(args),
        DatasetCommand::Split(args) => split::run(args),
        DatasetCommand::Cache(args) => cache::run(args),
        DatasetCommand::Add(args) => add(args),
        DatasetCommand::List(args) => list(args),
        DatasetCommand::Remove(args) => remove(args),
    }
}

fn open_store(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    Store::open(data_dir).with_context(|| format!("cannot open the run store in {}", data_dir.display()))
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let store = open_store(&args.data_dir)?;
    let input = Registration {
        name: args.name.clone(),
        label_file: args.labels.to_string_lossy().into_owned(),
        val_label_file: path_text(args.val_labels.as_deref()),
        test_label_file: path_text(args.test_labels.as_deref()),
        image_dir: args
            .images
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        allow_missing: args.allow_missing,
    };
    match datasets::register(&store, &input) {
        Ok(checked) => {
            let s = &checked.summary;
            println!(
                "registered '{}': {} images ({} found, {} missing) of {} patients, {} labels",
                checked.name,
                s.images,
                s.found,
                s.missing,
                s.patients,
                s.labels.len()
            );
            println!("  labels: {}", checked.label_file.display());
            if let (Some((val, test)), Some(counts)) = (&checked.split_files, &s.split_files) {
                println!(
                    "  split as given: {} train, {} validation ({}), {} test images ({})",
                    counts.train,
                    counts.val,
                    val.display(),
                    counts.test,
                    test.display()
                );
                for shared in &counts.shared_patients {
                    eprintln!("warning: {shared}");
                }
            }
            println!("  images: {}", checked.image_dir.display());
            println!("train on it with: cxr8 train --dataset {}", checked.name);
            Ok(())
        }
        Err(problems) => {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| {
                    let flag = match p.field.as_str() {
                        "name" => "NAME",
                        "label_file" => "--labels",
                        "val_label_file" => "--val-labels",
                        "test_label_file" => "--test-labels",
                        "image_dir" => "--images",
                        "allow_missing" => "--allow-missing",
                        _ => "store",
                    };
                    format!("  {flag}: {}", p.message)
                })
                .collect();
            bail!("cannot register '{}':\n{}", args.name, lines.join("\n"))
        }
    }
}

fn path_text(path: Option<&std::path::Path>) -> String {
    path.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = open_store(&args.data_dir)?;
    let rows = store.datasets()?;
    let demo_labels = args.data_dir.join("demo").join(crate::data::demo::LABEL_FILE);
    if args.json {
        let mut out = vec![serde_json::json!({
            "name": crate::service::datasets::DEMO_DATASET,
            "demo": true,
            "label_file": demo_labels,
            "generated": demo_labels.is_file(),
        })];
        out.extend(rows.iter().map(crate::service::datasets::registered_json));
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<24} {:>9} {:>9} {:>9}  label file",
        "name", "images", "found", "patients"
    );
    let demo_note = if demo_labels.is_file() {
        "(built in, synthetic)"
    } else {
        "(built in, synthetic; not generated yet)"
    };
    println!("{:<24} {:>9} {:>9} {:>9}  {demo_note}", "demo", "-", "-", "-");
    for row in &rows {
        let (images, found, patients) = match Summary::from_row(row) {
            Some(s) => (s.images.to_string(), s.found.to_string(), s.patients.to_string()),
            None => ("?".into(), "?".into(), "?".into()),
        };
        println!(
            "{:<24} {images:>9} {found:>9} {patients:>9}  {}",
            row.name, row.label_file
        );
    }
    Ok(())
}

fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let store = open_store(&args.data_dir)?;
    datasets::remove(&store, &args.name)?;
    println!("forgot '{}' (its files are untouched)", args.name);
    Ok(())
}
