//! Images and the pixel cache on real NIH files, hand-made odd PNGs, and the `dataset cache` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use cxr8::data::cache::{self, BuildOptions, Cache};
use cxr8::data::images::{self, check_images, CheckDepth, ImageIndex};
use cxr8::data::{Error, LabelTable};
use image::{GrayImage, ImageBuffer, Luma, LumaA};

use crate::util::nih_dir;

/// The 4 real NIH files stored as RGBA (gray in R=G=B, alpha 255), as found by reading the headers.
const RGBA_IMAGES: [&str; 4] = [
    "00002578_000.png",
    "00004934_000.png",
    "00005224_000.png",
    "00005813_000.png",
];

fn images_1024() -> PathBuf {
    nih_dir().join("images_1024")
}

/// An NIH label table (real header) listing `names`.
fn nih_table(names: &[&str]) -> LabelTable {
    let mut text = String::from(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
         OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n",
    );
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!("{name},No Finding,0,{},40,F,PA,1024,1024,0.14,0.14\n", i + 1));
    }
    LabelTable::from_text("test_labels.csv", text).unwrap()
}

#[test]
fn every_real_image_decodes_to_1024_gray_and_exactly_four_are_rgba() {
    let index = ImageIndex::scan(images_1024()).unwrap();
    assert_eq!(index.len(), 64);
    let mut rgba = Vec::new();
    for name in index.names() {
        let path = index.get(name).unwrap();
        let gray = images::load_gray(path).unwrap();
        assert_eq!(gray.dimensions(), (1024, 1024), "{name}");
        let original = image::open(path).unwrap();
        if let image::DynamicImage::ImageRgba8(rgba_image) = original {
            // Gray stored as RGBA: our gray must be the R (= G = B) channel, alpha ignored.
            assert!(
                rgba_image.pixels().zip(gray.pixels()).all(|(c, g)| c.0[0] == g.0[0]),
                "{name}"
            );
            rgba.push(name.to_owned());
        } else {
            assert_eq!(original.into_luma8(), gray, "{name}");
        }
    }
    assert_eq!(rgba, RGBA_IMAGES);
}

#[test]
fn sixteen_bit_gray_alpha_and_jpeg_become_8_bit_gray() {
    let dir = tempfile::tempdir().unwrap();
    let expected = GrayImage::from_fn(33, 17, |x, y| Luma([(x * 7 + y * 3) as u8]));

    let wide: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(33, 17, |x, y| Luma([u16::from(expected.get_pixel(x, y).0[0]) * 257]));
    let path16 = dir.path().join("sixteen.png");
    wide.save(&path16).unwrap();
    assert!(matches!(
        image::open(&path16).unwrap(),
        image::DynamicImage::ImageLuma16(_)
    ));
    assert_eq!(images::load_gray(&path16).unwrap(), expected);

    let la: ImageBuffer<LumaA<u8>, Vec<u8>> =
        ImageBuffer::from_fn(33, 17, |x, y| LumaA([expected.get_pixel(x, y).0[0], (x * 5) as u8]));
    let path_la = dir.path().join("gray_alpha.png");
    la.save(&path_la).unwrap();
    assert!(matches!(
        image::open(&path_la).unwrap(),
        image::DynamicImage::ImageLumaA8(_)
    ));
    assert_eq!(images::load_gray(&path_la).unwrap(), expected);

    let flat = GrayImage::from_pixel(32, 32, Luma([120]));
    let jpeg = dir.path().join("flat.jpg");
    flat.save(&jpeg).unwrap();
    let decoded = images::load_gray(&jpeg).unwrap();
    assert_eq!(decoded.dimensions(), (32, 32));
    assert!(decoded.pixels().all(|p| p.0[0].abs_diff(120) <= 2));
}

#[test]
fn bad_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(images_1024().join("00000075_000.png")).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let not_image = dir.path().join("labels.png");
    std::fs::write(&not_image, "Image Index,Finding Labels\n").unwrap();
    let missing = dir.path().join("missing.png");

    for (path, is_image_error) in [(&truncated, true), (&not_image, true), (&missing, false)] {
        let err = images::load_gray(path).unwrap_err();
        assert_eq!(matches!(err, Error::Image { .. }), is_image_error, "{err:?}");
        assert!(matches!(err, Error::Image { .. } | Error::Io { .. }), "{err:?}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = images::load_gray(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated or damaged"), "{err}");
}

#[test]
fn nih_folder_layout_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let png = GrayImage::from_pixel(4, 4, Luma([9]));
    for sub in ["images_001/images", "images_002", "other"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    png.save(root.join("images_001/images/00000001_000.png")).unwrap();
    png.save(root.join("images_002/00000002_000.png")).unwrap();
    png.save(root.join("00000003_000.png")).unwrap();
    png.save(root.join("other/00000004_000.png")).unwrap();
    std::fs::write(root.join("images_002/README.txt"), "not an image").unwrap();

    let index = ImageIndex::scan(root).unwrap();
    assert_eq!(
        index.names(),
        ["00000001_000.png", "00000002_000.png", "00000003_000.png"]
    );
    assert_eq!(
        index.get("00000001_000.png").unwrap(),
        root.join("images_001/images/00000001_000.png")
    );
    assert!(
        index.get("00000004_000.png").is_none(),
        "only images/ and images_* folders are NIH's"
    );

    let err = ImageIndex::scan(root.join("no_such_folder")).unwrap_err().to_string();
    assert!(
        err.contains("no_such_folder") && err.contains("image folder not found"),
        "{err}"
    );
}

#[test]
fn check_counts_found_missing_and_unreadable_on_the_real_label_file() {
    let table = LabelTable::load(nih_dir().join("Data_Entry_2017_v2020.csv.gz")).unwrap();
    let index = ImageIndex::scan(images_1024()).unwrap();
    let check = check_images(&table, &index, CheckDepth::Header);
    assert_eq!(check.listed, 112_120);
    assert_eq!(check.readable, 64);
    assert_eq!(check.missing.len(), 112_120 - 64);
    assert!(check.unreadable.is_empty());
    assert!(check.to_string().contains("and 112051 more"), "{check}");

    // A junk file under a listed name is unreadable; only decoding notices a truncated one.
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(images_1024().join("00000075_000.png")).unwrap();
    std::fs::write(dir.path().join("00000075_000.png"), &real).unwrap();
    std::fs::write(dir.path().join("00000129_000.png"), &real[..real.len() / 3]).unwrap();
    std::fs::write(dir.path().join("00000211_000.png"), "junk").unwrap();
    let table = nih_table(&[
        "00000075_000.png",
        "00000129_000.png",
        "00000211_000.png",
        "00000999_000.png",
    ]);
    let index = ImageIndex::scan(dir.path()).unwrap();
    let header = check_images(&table, &index, CheckDepth::Header);
    assert_eq!(
        (header.readable, header.missing.len(), header.unreadable.len()),
        (2, 1, 1)
    );
    let decode = check_images(&table, &index, CheckDepth::Decode);
    assert_eq!(
        (decode.readable, decode.missing.len(), decode.unreadable.len()),
        (1, 1, 2)
    );
    let text = decode.to_string();
    for name in ["00000999_000.png", "00000129_000.png", "00000211_000.png"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn cache_of_real_images_holds_the_resized_pixels() {
    let names = ["00000075_000.png", RGBA_IMAGES[0], "00000129_000.png", RGBA_IMAGES[3]];
    let table = nih_table(&names);
    let index = ImageIndex::scan(images_1024()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cache, report) = cache::build(&table, &index, 64, dir.path(), &BuildOptions::default()).unwrap();
    assert_eq!(report.cached, 4);
    assert_eq!(cache.path(), cache::path_for(dir.path(), &table, 64));
    for (i, name) in names.iter().enumerate() {
        let expected = images::load_resized(images_1024().join(name), 64).unwrap();
        assert_eq!(cache.image(i), expected.as_raw().as_slice(), "{name}");
    }
    // Chest X-rays are mid-gray on average with wide spread.
    assert!((0.3..0.7).contains(&cache.mean()) && (0.15..0.4).contains(&cache.std()));
    let reopened = Cache::open(cache.path()).unwrap();
    reopened.verify().unwrap();
    assert_eq!(reopened.ids(), cache.ids());
    // Other sizes are other files.
    assert_ne!(
        cache::path_for(dir.path(), &table, 64),
        cache::path_for(dir.path(), &table, 128)
    );
}

fn cxr8(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cxr8"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn dataset_cache_command_reports_and_refuses_missing_images() {
    let dir = tempfile::tempdir().unwrap();
    let images_dir = dir.path().join("imgs");
    std::fs::create_dir(&images_dir).unwrap();
    for name in ["00000075_000.png", "00000129_000.png"] {
        std::fs::copy(images_1024().join(name), images_dir.join(name)).unwrap();
    }
    let labels = dir.path().join("labels.csv");
    let mut text = String::from(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
         OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n",
    );
    for (i, name) in ["00000075_000.png", "00000129_000.png", "00000404_000.png"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!("{name},No Finding,0,{i},40,F,PA,1024,1024,0.14,0.14\n"));
    }
    std::fs::write(&labels, text).unwrap();
    let args = [
        "dataset",
        "cache",
        "--labels",
        "labels.csv",
        "--images",
        "imgs",
        "--size",
        "32",
    ];

    let (ok, out) = cxr8(&args, dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains("00000404_000.png") && out.contains("--allow-missing"),
        "{out}"
    );

    let (ok, out) = cxr8(&[&args[..], &["--allow-missing"]].concat(), dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("2 of the listed found, 1 missing"), "{out}");
    assert!(out.contains("images/s"), "{out}");
    let cache_line = out.lines().find_map(|l| l.strip_prefix("cache: ")).expect(&out);
    let cache = Cache::open(dir.path().join(cache_line)).unwrap();
    assert_eq!(cache.len(), 2);
    assert!(cache_line.starts_with("data/cache/labels-32px-"), "{cache_line}");
}
