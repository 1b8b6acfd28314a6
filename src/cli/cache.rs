//! `cxr8 dataset cache`: decode and resize a data set's images once into the pixel cache.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::cache::{self, BuildOptions, DEFAULT_CACHE_DIR};
use crate::data::images::ImageIndex;
use crate::data::LabelTable;

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Label file: NIH Data_Entry_2017*.csv(.gz), Kaggle sample_labels.csv or a one-hot CSV.
    #[arg(long)]
    pub labels: PathBuf,
    /// Image folder: flat, or NIH's with images_001 … images_012 in it.
    #[arg(long)]
    pub images: PathBuf,
    /// Side of the square images in the cache, in px.
    #[arg(long)]
    pub size: u32,
    /// Folder for cache files.
    #[arg(long, default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Cache the images that are there even if some are missing or unreadable (they are listed).
    #[arg(long)]
    pub allow_missing: bool,
    /// Decoder threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Rebuild even when a valid cache for the same inputs exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: CacheArgs) -> anyhow::Result<()> {
    let table = LabelTable::load(&args.labels).context("reading the label file")?;
    let index = ImageIndex::scan(&args.images).context("scanning the image folder")?;
    let found = table.records.iter().filter(|r| index.get(&r.image).is_some()).count();
    println!(
        "{}: {} images listed; {}: {} image files, {} of the listed found, {} missing",
        args.labels.display(),
        table.records.len(),
        args.images.display(),
        index.len(),
        found,
        table.records.len() - found
    );

    let bar = ProgressBar::new(found as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
            .expect("valid progress template"),
    );
    let progress_bar = bar.clone();
    let options = BuildOptions {
        allow_missing: args.allow_missing,
        threads: args.threads,
        progress: Some(Arc::new(move |done, _total| progress_bar.set_position(done as u64))),
        force: args.force,
    };
    let result = cache::build(&table, &index, args.size, &args.cache_dir, &options);
    bar.finish_and_clear();
    let (cache, report) = result.context("building the image cache")?;
    println!("{report}");
    println!(
        "{} images of {}², pixel mean {:.4}, std {:.4} (in pixel/255 units)",
        cache.len(),
        cache.size(),
        cache.mean(),
        cache.std()
    );
    println!("cache: {}", cache.path().display());
    Ok(())
}
