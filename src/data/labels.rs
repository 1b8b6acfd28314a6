//! The label vocabulary: NIH ChestX-ray14's 14 findings, the 5 extra findings of the 20-label
//! long-tail set (NIH-CXR-LT, Holste et al. 2022), and "No Finding"; spelling normalisation.

/// The 14 findings of NIH ChestX-ray14 in the order of the CheXNet paper (Rajpurkar et al. 2017),
/// spelled as `Data_Entry_2017.csv` spells them.
pub const NIH_FINDINGS: [&str; 14] = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
];

/// The findings NIH-CXR-LT adds to the 14 to make its 20-label set (with "No Finding").
pub const LONG_TAIL_EXTRA: [&str; 5] = [
    "Pneumoperitoneum",
    "Pneumomediastinum",
    "Subcutaneous Emphysema",
    "Tortuous Aorta",
    "Calcification of the Aorta",
];

/// NIH writes this in `Finding Labels` when an image has none of the findings.
pub const NO_FINDING: &str = "No Finding";

/// All 20 labels of the long-tail set, in our canonical order and spelling.
pub fn long_tail_labels() -> impl Iterator<Item = &'static str> {
    NIH_FINDINGS
        .iter()
        .chain(LONG_TAIL_EXTRA.iter())
        .copied()
        .chain(std::iter::once(NO_FINDING))
}

/// Folds case, `_`, `-` and runs of spaces so that `Pleural_Thickening`, `pleural thickening`
/// and `Pleural-Thickening` compare equal.
fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name
        .trim()
        .split(|c: char| c == '_' || c == '-' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_lowercase());
    }
    out
}

/// The canonical spelling of a label of the 20-label set, or `None` for anything else.
/// Matches whole names only: `Emphysema` never matches `Subcutaneous Emphysema`.
pub fn canonical(name: &str) -> Option<&'static str> {
    let folded = fold(name);
    long_tail_labels().find(|label| fold(label) == folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_variants_map_to_one_label() {
        for variant in [
            "Pleural_Thickening",
            "Pleural Thickening",
            "pleural-thickening",
            " PLEURAL  THICKENING ",
        ] {
            assert_eq!(canonical(variant), Some("Pleural_Thickening"), "{variant}");
        }
        assert_eq!(canonical("No_Finding"), Some(NO_FINDING));
        assert_eq!(canonical("subcutaneous_emphysema"), Some("Subcutaneous Emphysema"));
    }

    #[test]
    fn whole_names_only() {
        assert_eq!(canonical("Emphysema"), Some("Emphysema"));
        assert_eq!(canonical("Subcutaneous Emphysema"), Some("Subcutaneous Emphysema"));
        assert_eq!(canonical("Emphysem"), None);
        assert_eq!(canonical("Lung Opacity"), None);
    }

    #[test]
    fn twenty_labels() {
        let all: Vec<_> = long_tail_labels().collect();
        assert_eq!(all.len(), 20);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 20);
    }
}
