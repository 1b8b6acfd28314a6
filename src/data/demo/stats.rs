//! The embedded NIH ChestX-ray14 statistics (`nih_stats.txt`): finding combinations with their
//! counts, images per patient, age decades, sex and view, and weighted sampling from them.

use rand::Rng;

use crate::data::labels::NIH_FINDINGS;

/// The text of `nih_stats.txt`, measured on NIH's `Data_Entry_2017_v2020.csv` (Wang et al.,
/// CVPR 2017); `tests/demo.rs` recomputes it from the real file.
pub const NIH_STATS_TEXT: &str = include_str!("nih_stats.txt");

/// Share of demo images whose findings are drawn for a uniformly chosen finding rather than at
/// NIH's frequency (see [`NihStats::draw_findings`]).
pub const ENRICHED_SHARE: f64 = 0.3;

/// A discrete distribution: keys with their NIH counts.
#[derive(Debug, Clone)]
pub struct Weighted<T> {
    pub items: Vec<(T, u64)>,
    total: u64,
}

impl<T> Weighted<T> {
    fn new(items: Vec<(T, u64)>) -> Self {
        let total = items.iter().map(|(_, c)| c).sum();
        Weighted { items, total }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn sample(&self, rng: &mut impl Rng) -> &T {
        let mut pick = rng.random_range(0..self.total);
        for (item, count) in &self.items {
            if pick < *count {
                return item;
            }
            pick -= count;
        }
        &self.items.last().expect("distributions are never empty").0
    }
}

/// The parsed statistics.
#[derive(Debug, Clone)]
pub struct NihStats {
    /// Finding combinations, each a list of NIH labels sorted by name (empty = "No Finding").
    pub combinations: Weighted<Vec<String>>,
    pub images_per_patient: Weighted<u32>,
    /// Decade of age (0 = 0–9 years, 9 = 90 and over).
    pub age_decade: Weighted<u32>,
    pub male: Weighted<bool>,
    pub pa_view: Weighted<bool>,
}

impl NihStats {
    /// The statistics compiled into the binary.
    pub fn embedded() -> Self {
        Self::parse(NIH_STATS_TEXT).expect("the embedded nih_stats.txt is well-formed (unit-tested)")
    }

    /// Parses the `[section]` / `count<TAB>key` format; the error says which line is wrong.
    pub fn parse(text: &str) -> crate::data::Result<Self> {
        let bad = |line: Option<usize>, message: String| crate::data::Error::Csv {
            path: "nih_stats.txt".into(),
            line: line.map(|number| number as u64 + 1),
            column: None,
            message,
        };
        let mut sections: Vec<(String, Vec<(u64, String)>)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((name.to_string(), Vec::new()));
                continue;
            }
            let (count, key) = line
                .split_once('\t')
                .ok_or_else(|| bad(Some(number), "expected 'count<TAB>key'".into()))?;
            let count: u64 = count
                .parse()
                .map_err(|_| bad(Some(number), format!("'{count}' is not a count")))?;
            let section = sections
                .last_mut()
                .ok_or_else(|| bad(Some(number), "data before the first [section]".into()))?;
            section.1.push((count, key.to_string()));
        }
        let take = |name: &str| {
            let rows = sections
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, rows)| rows.clone())
                .ok_or_else(|| bad(None, format!("missing section [{name}]")))?;
            if rows.is_empty() {
                return Err(bad(None, format!("section [{name}] is empty")));
            }
            Ok(rows)
        };
        let number = |key: &str| {
            key.parse::<u32>()
                .map_err(|_| bad(None, format!("'{key}' is not a number")))
        };
        let combinations = take("combinations")?
            .into_iter()
            .map(|(c, key)| {
                let labels = if key == super::super::labels::NO_FINDING {
                    Vec::new()
                } else {
                    key.split('|').map(str::to_string).collect()
                };
                (labels, c)
            })
            .collect();
        let per_patient = take("images_per_patient")?
            .into_iter()
            .map(|(c, k)| Ok((number(&k)?, c)))
            .collect::<crate::data::Result<_>>()?;
        let ages = take("age_decade")?
            .into_iter()
            .map(|(c, k)| Ok((number(&k)?, c)))
            .collect::<crate::data::Result<_>>()?;
        let male = take("sex")?.into_iter().map(|(c, k)| (k == "M", c)).collect();
        let pa = take("view")?.into_iter().map(|(c, k)| (k == "PA", c)).collect();
        Ok(NihStats {
            combinations: Weighted::new(combinations),
            images_per_patient: Weighted::new(per_patient),
            age_decade: Weighted::new(ages),
            male: Weighted::new(male),
            pa_view: Weighted::new(pa),
        })
    }

    /// Draws one image's findings for the demo set: usually a combination at NIH's frequency, but
    /// with probability [`ENRICHED_SHARE`] a combination containing a finding chosen uniformly.
    /// At NIH's prevalence a 3,000-image set would hold about 6 Hernia images (1 in validation),
    /// too few to learn or to measure an AUROC on; enrichment gives every finding at least ~60.
    pub fn draw_findings(&self, rng: &mut impl Rng) -> Vec<String> {
        if rng.random_bool(ENRICHED_SHARE) {
            let finding = &NIH_FINDINGS[rng.random_range(0..NIH_FINDINGS.len())];
            let with_finding = Weighted::new(
                self.combinations
                    .items
                    .iter()
                    .filter(|(labels, _)| labels.iter().any(|l| l == finding))
                    .cloned()
                    .collect(),
            );
            if with_finding.total() > 0 {
                return with_finding.sample(rng).clone();
            }
        }
        self.combinations.sample(rng).clone()
    }

    /// Expected share of demo images carrying each label under [`NihStats::draw_findings`].
    pub fn demo_label_shares(&self) -> Vec<(String, f64)> {
        let nih = self.label_shares();
        NIH_FINDINGS
            .iter()
            .map(|finding| {
                let base = nih.iter().find(|(l, _)| l == finding).map_or(0.0, |(_, s)| *s);
                // Chance that a combination drawn for some chosen finding also carries this one.
                let enriched: f64 = NIH_FINDINGS
                    .iter()
                    .map(|chosen| {
                        let (mut both, mut all) = (0u64, 0u64);
                        for (labels, count) in &self.combinations.items {
                            if labels.iter().any(|l| l == chosen) {
                                all += count;
                                if labels.iter().any(|l| l == finding) {
                                    both += count;
                                }
                            }
                        }
                        both as f64 / all.max(1) as f64
                    })
                    .sum::<f64>()
                    / NIH_FINDINGS.len() as f64;
                (
                    finding.to_string(),
                    (1.0 - ENRICHED_SHARE) * base + ENRICHED_SHARE * enriched,
                )
            })
            .collect()
    }

    /// Expected share of images carrying each label (NIH spelling), from the combinations.
    pub fn label_shares(&self) -> Vec<(String, f64)> {
        let mut shares: Vec<(String, f64)> = Vec::new();
        let total = self.combinations.total() as f64;
        for (labels, count) in &self.combinations.items {
            for label in labels {
                match shares.iter_mut().find(|(l, _)| l == label) {
                    Some(entry) => entry.1 += *count as f64 / total,
                    None => shares.push((label.clone(), *count as f64 / total)),
                }
            }
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_stats_cover_all_nih_images_and_findings() {
        let stats = NihStats::embedded();
        assert_eq!(stats.combinations.total(), 112_120);
        assert_eq!(stats.age_decade.total(), 112_120);
        let patients: u64 = stats.images_per_patient.items.iter().map(|(_, c)| c).sum();
        assert_eq!(patients, 30_805);
        let images: u64 = stats.images_per_patient.items.iter().map(|(n, c)| *n as u64 * c).sum();
        assert_eq!(images, 112_120);
        let shares = stats.label_shares();
        for finding in NIH_FINDINGS {
            assert!(shares.iter().any(|(l, _)| l == finding), "{finding} missing");
        }
        assert_eq!(shares.len(), 14, "only NIH spellings: {shares:?}");
    }

    #[test]
    fn parse_names_the_bad_line() {
        let err = NihStats::parse("[combinations]\nten\tNo Finding\n").unwrap_err();
        assert!(matches!(err, crate::data::Error::Csv { line: Some(2), .. }), "{err:?}");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = NihStats::parse("[combinations]\n1\tNo Finding\n").unwrap_err();
        assert!(err.to_string().contains("images_per_patient"), "{err}");
    }
}
