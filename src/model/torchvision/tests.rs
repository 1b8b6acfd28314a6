use super::*;

fn spec(architecture: Architecture) -> ModelSpec {
    ModelSpec {
        architecture,
        ..ModelSpec::default()
    }
}

fn model(architecture: Architecture, labels: usize) -> Classifier {
    Classifier::new(&spec(architecture), labels, &Device::flex())
}

const TORCHVISION: [Architecture; 6] = [
    Architecture::ResNet18,
    Architecture::ResNet34,
    Architecture::ResNet50,
    Architecture::DenseNet121,
    Architecture::MobileNetV2,
    Architecture::EfficientNetB0,
];

#[test]
fn every_tensor_of_the_six_architectures_has_one_torchvision_key() {
    // torchvision's state_dict key counts less one `num_batches_tracked` per batch norm.
    let expected = [102, 182, 267, 606, 262, 311];
    // Keys of torchvision's own models, one or two awkward ones per architecture.
    let known: [&[&str]; 6] = [
        &[
            "conv1.weight",
            "layer2.0.downsample.0.weight",
            "layer4.1.bn2.running_var",
            "fc.weight",
        ],
        &["layer3.5.conv2.weight", "layer2.3.bn1.bias"],
        &[
            "layer1.0.downsample.1.weight",
            "layer4.2.conv3.weight",
            "layer3.5.bn3.running_mean",
        ],
        &[
            "features.conv0.weight",
            "features.denseblock4.denselayer16.conv2.weight",
            "features.transition3.norm.running_var",
            "features.norm5.bias",
            "classifier.weight",
        ],
        &[
            "features.0.0.weight",
            "features.1.conv.0.0.weight",
            "features.1.conv.2.running_mean",
            "features.17.conv.3.running_var",
            "features.18.1.weight",
            "classifier.1.bias",
        ],
        &[
            "features.0.1.weight",
            "features.1.0.block.1.fc2.weight",
            "features.1.0.block.2.1.running_var",
            "features.7.0.block.3.1.running_mean",
            "features.6.3.block.2.fc1.bias",
            "features.8.0.weight",
            "classifier.1.weight",
        ],
    ];
    for ((arch, count), known) in TORCHVISION.into_iter().zip(expected).zip(known) {
        let names: Vec<String> = model(arch, 5)
            .collect(None, None, false)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names.len(), count, "{arch}");
        let keys: BTreeSet<String> = names
            .iter()
            .map(|n| {
                torch_key(arch, n)
                    .unwrap_or_else(|| panic!("{arch}: {n} has no key"))
                    .key
            })
            .collect();
        assert_eq!(keys.len(), count, "{arch}: two tensors on one key");
        for key in known {
            assert!(keys.contains(*key), "{arch}: no {key}");
        }
    }
    assert!(torch_key(Architecture::SimpleCnn, "head.weight").is_none());
}

/// Writes tensors (f32, or rounded to `dtype`) as a safetensors file.
fn write(path: &Path, tensors: &Tensors, dtype: safetensors::Dtype) {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, values))| {
            let bytes: Vec<u8> = match dtype {
                safetensors::Dtype::F16 => values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                safetensors::Dtype::BF16 => values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                safetensors::Dtype::I64 => values.iter().flat_map(|v| (*v as i64).to_le_bytes()).collect(),
                _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            (k.clone(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = encoded
        .iter()
        .map(|(k, shape, bytes)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn logits(model: &Classifier) -> Vec<f32> {
    let device = Device::flex();
    let values: Vec<f32> = (0..2 * 64 * 64).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let input = Tensor::<4>::from_data(TensorData::new(values, [2, 1, 64, 64]), &device);
    model.forward(input).into_data().try_to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn export_then_import_gives_the_same_model_and_a_three_channel_stem_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Architecture::ResNet18;
    let source = model(arch, 3);
    let mut tensors = export(&source, &spec(arch)).unwrap();
    assert_eq!(tensors["conv1.weight"].0, [64, 1, 7, 7], "one-channel stem");
    assert_eq!(tensors["fc.weight"].0, [3, 512], "torch's [out, in]");
    let path = dir.path().join("resnet.safetensors");
    write(&path, &tensors, safetensors::Dtype::F32);
    let (imported, report) = import(model(arch, 3), &spec(arch), &StateDict::read(&path).unwrap()).unwrap();
    assert!(report.head_kept && !report.stem_folded);
    assert_eq!(report.tensors, 102);
    assert_eq!(max_diff(&logits(&source), &logits(&imported)), 0.0);

    // An RGB stem whose channels sum to the gray one: the same model.
    let (shape, gray) = tensors.remove("conv1.weight").unwrap();
    let plane = 49;
    let rgb: Vec<f32> = (0..64)
        .flat_map(|o| {
            let w = &gray[o * plane..(o + 1) * plane];
            let third: Vec<f32> = w.iter().map(|v| v * 0.25).collect();
            let rest: Vec<f32> = w.iter().map(|v| v * 0.5).collect();
            [third.clone(), third, rest].concat()
        })
        .collect();
    tensors.insert("conv1.weight".into(), (vec![shape[0], 3, 7, 7], rgb));
    write(&path, &tensors, safetensors::Dtype::F32);
    let (folded, report) = import(model(arch, 3), &spec(arch), &StateDict::read(&path).unwrap()).unwrap();
    assert!(report.stem_folded);
    assert!(max_diff(&logits(&source), &logits(&folded)) < 1e-5);
}

#[test]
fn a_head_for_other_labels_is_left_initialised_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Architecture::MobileNetV2;
    let source = model(arch, 1000);
    let path = dir.path().join("imagenet.safetensors");
    write(&path, &export(&source, &spec(arch)).unwrap(), safetensors::Dtype::F32);
    let fresh = model(arch, 14);
    let head_before = fresh
        .collect(None, None, false)
        .into_iter()
        .find(|t| t.name == "head.weight")
        .unwrap();
    let head_before = burn::store::bridge::into_data(head_before)
        .unwrap()
        .try_to_vec::<f32>()
        .unwrap();
    let (imported, report) = import(fresh, &spec(arch), &StateDict::read(&path).unwrap()).unwrap();
    assert!(!report.head_kept);
    let reason = report.head_reason.unwrap();
    assert!(
        reason.contains("classifier.1.weight") && reason.contains("[1000, 1280]") && reason.contains("[14, 1280]"),
        "{reason}"
    );
    let tensors = imported.collect(None, None, false);
    let head_after = tensors.iter().find(|t| t.name == "head.weight").unwrap();
    assert_eq!(
        burn::store::bridge::to_data(head_after)
            .unwrap()
            .try_to_vec::<f32>()
            .unwrap(),
        head_before
    );
    // The backbone came from the file.
    let exported = export(&imported, &spec(arch)).unwrap();
    let original = export(&source, &spec(arch)).unwrap();
    assert_eq!(
        exported["features.18.1.running_var"],
        original["features.18.1.running_var"]
    );
}

#[test]
fn half_precision_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Architecture::ResNet18;
    let source = model(arch, 2);
    let tensors = export(&source, &spec(arch)).unwrap();
    for (dtype, tolerance) in [(safetensors::Dtype::F16, 1e-3), (safetensors::Dtype::BF16, 1e-2)] {
        let path = dir.path().join(format!("{dtype:?}.safetensors"));
        write(&path, &tensors, dtype);
        let dict = StateDict::read(&path).unwrap();
        let (key, (_, values)) = dict
            .tensors
            .iter()
            .find(|(k, _)| k.as_str() == "layer1.0.conv1.weight")
            .unwrap();
        let original = &tensors[key].1;
        let relative = max_diff(values, original) / original.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(relative < tolerance, "{dtype:?}: {relative}");
        import(model(arch, 2), &spec(arch), &dict).unwrap();
    }
}

#[test]
fn a_missing_misshaped_extra_or_integer_tensor_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Architecture::ResNet18;
    let tensors = export(&model(arch, 2), &spec(arch)).unwrap();
    let path = dir.path().join("w.safetensors");
    let attempt = |tensors: &Tensors, dtype| {
        write(&path, tensors, dtype);
        StateDict::read(&path)
            .and_then(|dict| import(model(arch, 2), &spec(arch), &dict))
            .unwrap_err()
            .to_string()
    };

    let mut missing = tensors.clone();
    missing.remove("layer3.1.bn2.running_mean");
    let err = attempt(&missing, safetensors::Dtype::F32);
    assert!(
        err.contains("missing 'layer3.1.bn2.running_mean'") && err.contains("[256]"),
        "{err}"
    );

    let mut misshaped = tensors.clone();
    misshaped.insert(
        "layer2.0.conv1.weight".into(),
        (vec![128, 64, 1, 1], vec![0.0; 128 * 64]),
    );
    let err = attempt(&misshaped, safetensors::Dtype::F32);
    assert!(
        err.contains("'layer2.0.conv1.weight' has shape [128, 64, 1, 1]") && err.contains("[128, 64, 3, 3]"),
        "{err}"
    );

    let mut extra = tensors.clone();
    extra.insert("layer5.0.conv1.weight".into(), (vec![1], vec![0.0]));
    let err = attempt(&extra, safetensors::Dtype::F32);
    assert!(
        err.contains("layer5.0.conv1.weight") && err.contains("does not have"),
        "{err}"
    );

    let small: Tensors = [("fc.bias".to_string(), (vec![2], vec![1.0, 2.0]))].into();
    let err = attempt(&small, safetensors::Dtype::I64);
    assert!(err.contains("'fc.bias' is stored as I64"), "{err}");

    // A batch norm's step counter is bookkeeping, not a weight: ignored.
    let mut counted = tensors.clone();
    counted.insert("bn1.num_batches_tracked".into(), (vec![], vec![7.0]));
    write(&path, &counted, safetensors::Dtype::F32);
    import(model(arch, 2), &spec(arch), &StateDict::read(&path).unwrap()).unwrap();

    std::fs::write(&path, b"not a tensor file").unwrap();
    assert!(matches!(StateDict::read(&path), Err(Error::Read { .. })));
    let pth = dir.path().join("w.pth");
    std::fs::write(&pth, b"PK not really a zip").unwrap();
    assert!(matches!(StateDict::read(&pth), Err(Error::Read { .. })));

    let narrow = ModelSpec {
        width: 0.5,
        ..spec(arch)
    };
    assert!(matches!(check_spec(&narrow), Err(Error::NotTorchvisionShaped { .. })));
    assert!(matches!(
        check_spec(&spec(Architecture::SimpleCnn)),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn published_densenet_keys_are_read_under_todays_names() {
    assert_eq!(
        legacy_densenet_key("features.denseblock1.denselayer1.norm.1.weight"),
        "features.denseblock1.denselayer1.norm1.weight"
    );
    assert_eq!(
        legacy_densenet_key("features.denseblock3.denselayer24.conv.2.weight"),
        "features.denseblock3.denselayer24.conv2.weight"
    );
    assert_eq!(
        legacy_densenet_key("features.transition1.conv.weight"),
        "features.transition1.conv.weight"
    );
}
