//! `cxr8 bench weights-parity`: logit parity with torchvision for weight import and export.
//!
//! `benches/weights_parity.py make --out DIR` writes, per architecture, torchvision weights with
//! random (seeded) values in every format the importer reads, a gray input batch and PyTorch's
//! logits. This command imports each file, runs the same input through cxr8 in eval mode and
//! reports max |Δlogit|; it then exports the imported model (`<model>.export.safetensors`) with
//! cxr8's logits beside it (`<model>.cxr8-logits.safetensors`) for the script's `check`, which
//! loads the export into torchvision and compares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use burn::store::{ModuleStore, SafetensorsStore};

use crate::model::torchvision::{self, StateDict};
use crate::model::{Architecture, Classifier, ModelSpec};

#[derive(Debug, clap::Args)]
pub struct ParityArgs {
    /// The folder `weights_parity.py make` wrote.
    #[arg(long)]
    pub dir: PathBuf,
    /// Architectures to check (default: the six with a torchvision counterpart).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub models: Vec<Architecture>,
    /// The bound each entry must meet.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f32,
}

/// One tensor of a safetensors file as f32.
fn read_tensor(path: &Path, key: &str) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let mut store = SafetensorsStore::from_file(path);
    let tensor = store
        .get_tensor(key)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .with_context(|| format!("{}: no '{key}'", path.display()))?;
    let data = burn::store::bridge::to_data(tensor)?;
    let shape = data.shape().to_vec();
    let values = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok((shape, values))
}

fn logits(model: &Classifier, input: &(Vec<usize>, Vec<f32>)) -> Vec<f32> {
    let device = Device::flex();
    let tensor = Tensor::<4>::from_data(TensorData::new(input.1.clone(), input.0.clone()), &device);
    model
        .forward(tensor)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 logits")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn bench_parity(args: ParityArgs) -> anyhow::Result<()> {
    let models = if args.models.is_empty() {
        Architecture::ALL
            .into_iter()
            .filter(|a| torchvision::supported(*a))
            .collect()
    } else {
        args.models.clone()
    };
    let input = read_tensor(&args.dir.join("input.safetensors"), "input")?;
    let device = Device::flex();
    let mut worst = 0.0f32;
    println!("| model | file | dtype | tensors | max |Δlogit| vs PyTorch |");
    println!("|---|---|---|---:|---:|");
    for arch in models {
        let spec = ModelSpec {
            architecture: arch,
            ..ModelSpec::default()
        };
        let name = arch.name();
        // (file, dtype shown, PyTorch logits computed from the weights as stored).
        let files = [
            (format!("{name}.pth"), "f32", format!("{name}.logits.safetensors")),
            (
                format!("{name}.safetensors"),
                "f32",
                format!("{name}.logits.safetensors"),
            ),
            (
                format!("{name}.f16.safetensors"),
                "f16",
                format!("{name}.f16.logits.safetensors"),
            ),
            (
                format!("{name}.bf16.pth"),
                "bf16",
                format!("{name}.bf16.logits.safetensors"),
            ),
        ];
        let mut imported = None;
        for (file, dtype, reference) in files {
            let expected = read_tensor(&args.dir.join(&reference), "logits")?;
            let labels = expected.0[1];
            let dict = StateDict::read(&args.dir.join(&file))?;
            let (model, report) = torchvision::import(Classifier::new(&spec, labels, &device), &spec, &dict)?;
            anyhow::ensure!(report.head_kept, "{file}: head not kept: {:?}", report.head_reason);
            let out = logits(&model, &input);
            let diff = max_diff(&out, &expected.1);
            worst = worst.max(diff);
            println!("| {name} | `{file}` | {dtype} | {} | {diff:.2e} |", report.tensors);
            if imported.is_none() {
                imported = Some((model, out, labels));
            }
        }
        // Export the f32 import, with the logits cxr8 computes, for the script's `check`.
        let (model, out, outputs) = imported.expect("four files were imported");
        let tensors = torchvision::export(&model, &spec)?;
        let labels: Vec<String> = (0..outputs).map(|i| format!("output {i}")).collect();
        let metadata = BTreeMap::from([
            ("architecture".to_string(), name.to_string()),
            ("labels".to_string(), serde_json::to_string(&labels)?),
            ("image_size".to_string(), input.0[2].to_string()),
            ("mean".to_string(), "0".to_string()),
            ("std".to_string(), "1".to_string()),
        ]);
        std::fs::write(
            args.dir.join(format!("{name}.export.safetensors")),
            torchvision::safetensors_bytes(&tensors, &metadata)?,
        )?;
        let shape = vec![input.0[0], outputs];
        let logits_file = BTreeMap::from([("logits".to_string(), (shape, out))]);
        std::fs::write(
            args.dir.join(format!("{name}.cxr8-logits.safetensors")),
            torchvision::safetensors_bytes(&logits_file, &BTreeMap::new())?,
        )?;
    }
    println!("\nlargest |Δlogit| {worst:.2e} (bound {:.0e})", args.tolerance);
    anyhow::ensure!(worst <= args.tolerance, "parity above the bound");
    Ok(())
}
