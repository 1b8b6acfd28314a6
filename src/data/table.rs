//! Label files as downloaded: NIH `Data_Entry_2017*.csv` (also gzipped), Kaggle's
//! `sample_labels.csv`, and one-hot CSVs in the NIH-CXR-LT style. Everything becomes one
//! [`LabelTable`]; the original text is kept so subsets are written back in the input's format.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::labels::{self, NIH_FINDINGS, NO_FINDING};
use super::{Error, Result};

/// Which of the formats we read a table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelFormat {
    /// NIH `Data_Entry_2017.csv` / `Data_Entry_2017_v2020.csv`: `Finding Labels` split on `|`.
    NihDataEntry,
    /// Kaggle's 5 % sample `sample_labels.csv`: as NIH, other size columns, ages like `058Y`.
    KaggleSample,
    /// One 0/1 column per label, an `id` column and a `subject_id`/`subj_id` patient column.
    OneHot,
}

/// Multi-label (sigmoid per label) or single-label (softmax over labels) problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    MultiLabel,
    SingleLabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    M,
    F,
}

/// One image's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Image file name, e.g. `00000001_000.png`.
    pub image: String,
    pub patient: String,
    /// Bit `i` set = the image has `LabelTable::labels[i]`.
    pub targets: u32,
    pub follow_up: Option<u32>,
    /// Age in years.
    pub age: Option<u16>,
    pub sex: Option<Sex>,
    /// `PA` or `AP` in NIH files.
    pub view: Option<String>,
}

impl Record {
    pub fn has(&self, label: usize) -> bool {
        self.targets & (1 << label) != 0
    }
}

/// A label mask in another label order: bit `i` moves to bit `new_index[i]`, or is dropped where
/// that is `None` (a label the other order does not have).
pub fn remap_bits(bits: u32, new_index: &[Option<usize>]) -> u32 {
    new_index
        .iter()
        .enumerate()
        .filter(|(old, _)| bits & (1 << old) != 0)
        .filter_map(|(_, new)| *new)
        .fold(0, |acc, new| acc | 1 << new)
}

/// A parsed label file.
#[derive(Debug, Clone)]
pub struct LabelTable {
    pub source: PathBuf,
    pub format: LabelFormat,
    /// Label names in model-output order. For NIH files these are the 14 findings and
    /// "No Finding" is an image with no bit set; one-hot files keep their own label columns.
    pub labels: Vec<String>,
    pub task: Task,
    pub records: Vec<Record>,
    /// Columns of a one-hot file that are neither id, patient nor one of the 20 labels;
    /// kept in written subsets, not used for training.
    pub ignored_columns: Vec<String>,
    /// The decompressed file text; `header` and `rows` index into it.
    text: String,
    header: Range<usize>,
    rows: Vec<Range<usize>>,
}

impl LabelTable {
    /// Keeps only the `wanted` labels, in that order (the outputs of a model trained on some of
    /// this file's labels, or with "No Finding" made a label): every record's mask is remapped,
    /// and "No Finding", where this file only implies it, is set on records with no finding.
    /// Names match case-insensitively. Returns the file's labels left out; a wanted label the
    /// file cannot give is an error naming the labels it has.
    pub fn restrict_to(&mut self, wanted: &[String]) -> Result<Vec<String>> {
        let implied_no_finding = self.no_finding_is_implicit();
        let mut new_index: Vec<Option<usize>> = vec![None; self.labels.len()];
        let mut no_finding_bit = None;
        for (new, label) in wanted.iter().enumerate() {
            match self.labels.iter().position(|l| l.eq_ignore_ascii_case(label)) {
                Some(old) => new_index[old] = Some(new),
                None if implied_no_finding && label.eq_ignore_ascii_case(NO_FINDING) => {
                    no_finding_bit = Some(1u32 << new)
                }
                None => {
                    return Err(Error::Format {
                        path: self.source.clone(),
                        message: format!(
                            "it has no '{label}' label, which is scored; its labels are: {}",
                            self.labels.join(", ")
                        ),
                    })
                }
            }
        }
        let left_out = self
            .labels
            .iter()
            .zip(&new_index)
            .filter(|(_, new)| new.is_none())
            .map(|(l, _)| l.clone())
            .collect();
        for record in &mut self.records {
            let had_finding = record.targets != 0;
            record.targets = remap_bits(record.targets, &new_index);
            if let (Some(bit), false) = (no_finding_bit, had_finding) {
                record.targets |= bit;
            }
        }
        self.labels = wanted.to_vec();
        Ok(left_out)
    }

    /// Appends the rows of `other` (the next file of a data set shipped as several, such as
    /// NIH-CXR-LT's train / val / test CSVs). Its labels must be the same set (any column order:
    /// bits are matched by name) and the same task; returns the appended rows' range.
    pub fn append(&mut self, other: LabelTable) -> Result<std::ops::Range<usize>> {
        let mismatch = |message: String| Error::Format {
            path: other.source.clone(),
            message,
        };
        let mut sorted_ours = self.labels.clone();
        let mut sorted_theirs = other.labels.clone();
        sorted_ours.sort();
        sorted_theirs.sort();
        if sorted_ours != sorted_theirs {
            return Err(mismatch(format!(
                "its labels ({}) differ from {}'s ({}); the files of one data set need the same label columns",
                other.labels.join(", "),
                self.source.display(),
                self.labels.join(", ")
            )));
        }
        // A file whose rows happen to have one label each (a small validation file) is still
        // valid multi-label data; the other way round is not.
        if self.task == Task::SingleLabel && other.task == Task::MultiLabel {
            return Err(mismatch(format!(
                "some of its images have several labels but {} gives each image exactly one; \
                 the files of one data set need the same task",
                self.source.display(),
            )));
        }
        let ours: Vec<Option<usize>> = other
            .labels
            .iter()
            .map(|l| self.labels.iter().position(|m| m == l))
            .collect();
        let start = self.records.len();
        let offset = self.text.len();
        self.text.push_str(&other.text);
        self.rows
            .extend(other.rows.iter().map(|r| r.start + offset..r.end + offset));
        self.records.extend(other.records.into_iter().map(|mut record| {
            record.targets = remap_bits(record.targets, &ours);
            record
        }));
        Ok(start..self.records.len())
    }

    /// Reads a label file, gzipped or not, and detects its format from the header.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .map_err(|e| Error::Format {
                    path: path.into(),
                    message: format!("not a readable gzip file of UTF-8 text ({e})"),
                })?;
            text
        } else {
            String::from_utf8(bytes).map_err(|e| Error::Format {
                path: path.into(),
                message: format!(
                    "not UTF-8 text (byte {}): is this a CSV label file?",
                    e.utf8_error().valid_up_to()
                ),
            })?
        };
        Self::from_text(path, text)
    }

    /// Parses label-file text; `path` is only used in messages and as `source`.
    pub fn from_text(path: impl Into<PathBuf>, text: String) -> Result<Self> {
        let path = path.into();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut raw = csv::StringRecord::new();
        let mut lines: Vec<(u64, usize, csv::StringRecord)> = Vec::new();
        loop {
            match reader.read_record(&mut raw) {
                Ok(true) => {
                    let pos = raw.position().expect("csv reader records positions");
                    // Blank lines carry no data; csv skips them already, keep it that way.
                    lines.push((pos.line(), pos.byte() as usize, raw.clone()));
                }
                Ok(false) => break,
                Err(e) => {
                    return Err(Error::Csv {
                        line: e.position().map(|p| p.line()),
                        path,
                        column: None,
                        message: format!("malformed CSV: {e}"),
                    })
                }
            }
        }
        let Some((_, header_start, header)) = lines.first().cloned() else {
            return Err(Error::Format {
                path,
                message: "the file is empty: expected a header line such as NIH's \
                          'Image Index,Finding Labels,...' or a one-hot header 'id,subject_id,<labels>...'"
                    .into(),
            });
        };
        let mut ranges = Vec::with_capacity(lines.len());
        for (i, (_, start, _)) in lines.iter().enumerate() {
            let end = lines.get(i + 1).map(|l| l.1).unwrap_or(text.len());
            ranges.push(*start..end);
        }
        let header_range = header_start..ranges[0].end;
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let body: Vec<(u64, csv::StringRecord)> = lines[1..].iter().map(|(l, _, r)| (*l, r.clone())).collect();
        let row_ranges = ranges[1..].to_vec();

        let find = |wanted: &str| names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
        let (format, labels, task, records, ignored) = if find("Finding Labels").is_some() {
            let format = if names.iter().any(|n| n.starts_with("OriginalImage["))
                || !names.iter().any(|n| n == "OriginalImageWidth")
            {
                LabelFormat::NihDataEntry
            } else {
                LabelFormat::KaggleSample
            };
            let records = parse_nih(&path, &names, &body)?;
            let labels = NIH_FINDINGS.iter().map(|s| s.to_string()).collect();
            (format, labels, Task::MultiLabel, records, Vec::new())
        } else if find("id").is_some() {
            let (labels, task, records, ignored) = parse_one_hot(&path, &names, &body)?;
            (LabelFormat::OneHot, labels, task, records, ignored)
        } else {
            return Err(Error::Format {
                path,
                message: format!(
                    "unrecognised header [{}]: expected NIH's 'Image Index,Finding Labels,Follow-up #,Patient ID,...' \
                     or a one-hot file with an 'id' column, a 'subject_id' (or 'subj_id') column and one 0/1 column per label",
                    names.join(", ")
                ),
            });
        };
        if records.is_empty() {
            return Err(Error::Format {
                path,
                message: "the file has a header but no rows".into(),
            });
        }
        check_unique_ids(&path, &body, &records)?;
        Ok(LabelTable {
            source: path,
            format,
            labels,
            task,
            records,
            ignored_columns: ignored,
            text,
            header: header_range,
            rows: row_ranges,
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True when "No Finding" is the absence of every label rather than a label of its own.
    pub fn no_finding_is_implicit(&self) -> bool {
        !self.labels.iter().any(|l| l == NO_FINDING)
    }

    /// Images per label, in `labels` order, plus "No Finding" at the end when it is implicit.
    pub fn label_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self.labels.iter().map(|l| (l.clone(), 0)).collect();
        let mut none = 0;
        for record in &self.records {
            if record.targets == 0 {
                none += 1;
            }
            for (i, count) in counts.iter_mut().enumerate() {
                if record.has(i) {
                    count.1 += 1;
                }
            }
        }
        if self.no_finding_is_implicit() {
            counts.push((NO_FINDING.to_string(), none));
        }
        counts
    }

    /// Position of each image id, for joining with split lists, caches and predictions.
    pub fn index_by_image(&self) -> HashMap<&str, usize> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.image.as_str(), i))
            .collect()
    }

    /// Writes the header and the chosen rows exactly as they were in the input (uncompressed).
    pub fn write_subset(&self, path: impl AsRef<Path>, rows: &[usize]) -> Result<()> {
        let path = path.as_ref();
        let mut out = String::with_capacity(64 * (rows.len() + 1));
        let mut push_line = |range: &Range<usize>| {
            let line = &self.text[range.clone()];
            out.push_str(line.trim_end_matches(['\r', '\n']));
            out.push('\n');
        };
        push_line(&self.header);
        for &row in rows {
            push_line(&self.rows[row]);
        }
        super::write_atomically(path, out.as_bytes())
    }
}

fn parse_nih(path: &Path, names: &[String], body: &[(u64, csv::StringRecord)]) -> Result<Vec<Record>> {
    let column = |wanted: &str| -> Result<usize> {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(wanted))
            .ok_or_else(|| Error::Csv {
                path: path.into(),
                line: Some(1),
                column: Some(wanted.into()),
                message: format!(
                    "missing column '{wanted}' (NIH label files have 'Image Index', 'Finding Labels' and 'Patient ID')"
                ),
            })
    };
    let image_col = column("Image Index")?;
    let finding_col = column("Finding Labels")?;
    let patient_col = column("Patient ID")?;
    let optional = |wanted: &str| names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
    let follow_col = optional("Follow-up #");
    let age_col = optional("Patient Age");
    let sex_col = optional("Patient Gender");
    let view_col = optional("View Position");
    let needed = [
        Some(image_col),
        Some(finding_col),
        Some(patient_col),
        follow_col,
        age_col,
        sex_col,
        view_col,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);

    let mut records = Vec::with_capacity(body.len());
    for (line, row) in body {
        let err = |column: &str, message: String| Error::Csv {
            path: path.into(),
            line: Some(*line),
            column: Some(column.into()),
            message,
        };
        if row.len() <= needed {
            return Err(Error::Csv {
                path: path.into(),
                line: Some(*line),
                column: None,
                message: format!("row has {} fields, expected at least {}", row.len(), needed + 1),
            });
        }
        let image = row[image_col].trim();
        if image.is_empty() {
            return Err(err("Image Index", "empty image name".into()));
        }
        let patient = row[patient_col].trim();
        if patient.is_empty() {
            return Err(err("Patient ID", "empty patient id".into()));
        }
        let mut targets = 0u32;
        for finding in row[finding_col].split('|').map(str::trim).filter(|f| !f.is_empty()) {
            match NIH_FINDINGS.iter().position(|f| *f == finding) {
                Some(i) => targets |= 1 << i,
                None if finding == NO_FINDING => {}
                None => match labels::canonical(finding).and_then(|c| NIH_FINDINGS.iter().position(|f| *f == c)) {
                    Some(i) => targets |= 1 << i,
                    None => {
                        return Err(err(
                            "Finding Labels",
                            format!(
                                "unknown finding '{finding}' (expected one of {} or '{NO_FINDING}', separated by '|')",
                                NIH_FINDINGS.join(", ")
                            ),
                        ))
                    }
                },
            }
        }
        let follow_up = match follow_col.map(|c| row[c].trim()) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| err("Follow-up #", format!("'{v}' is not a whole number")))?,
            ),
        };
        let age = match age_col.map(|c| row[c].trim()) {
            None | Some("") => None,
            Some(v) => {
                Some(parse_age(v).ok_or_else(|| err("Patient Age", format!("'{v}' is not an age (e.g. 58 or 058Y)")))?)
            }
        };
        let sex = match sex_col.map(|c| row[c].trim()) {
            Some("M") | Some("m") => Some(Sex::M),
            Some("F") | Some("f") => Some(Sex::F),
            _ => None,
        };
        let view = view_col.map(|c| row[c].trim().to_string()).filter(|v| !v.is_empty());
        records.push(Record {
            image: image.into(),
            patient: patient.into(),
            targets,
            follow_up,
            age,
            sex,
            view,
        });
    }
    Ok(records)
}

/// `58`, `058Y` (years), `006M` (months), `010D` (days), as NIH and Kaggle write ages.
fn parse_age(value: &str) -> Option<u16> {
    let (digits, unit) = match value.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&value[..i], c.to_ascii_uppercase()),
        _ => (value, 'Y'),
    };
    let n: u32 = digits.parse().ok()?;
    let years = match unit {
        'Y' => n,
        'M' => n / 12,
        'W' => n / 52,
        'D' => n / 365,
        _ => return None,
    };
    u16::try_from(years).ok()
}

type OneHot = (Vec<String>, Task, Vec<Record>, Vec<String>);

fn parse_one_hot(path: &Path, names: &[String], body: &[(u64, csv::StringRecord)]) -> Result<OneHot> {
    let id_col = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case("id"))
        .expect("caller checked");
    let patient_col = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case("subject_id") || n.eq_ignore_ascii_case("subj_id"))
        .ok_or_else(|| Error::Csv {
            path: path.into(),
            line: Some(1),
            column: Some("subject_id".into()),
            message: "missing patient column: one-hot label files need 'subject_id' or 'subj_id' so splits can keep \
                      each patient's images together"
                .into(),
        })?;
    let mut label_cols: Vec<(usize, &'static str)> = Vec::new();
    let mut ignored = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i == id_col || i == patient_col {
            continue;
        }
        match labels::canonical(name) {
            Some(label) => {
                if let Some((other, _)) = label_cols.iter().find(|(_, l)| *l == label) {
                    return Err(Error::Csv {
                        path: path.into(),
                        line: Some(1),
                        column: Some(name.clone()),
                        message: format!(
                            "label '{label}' appears twice (columns '{}' and '{name}')",
                            names[*other]
                        ),
                    });
                }
                label_cols.push((i, label));
            }
            None => ignored.push(name.clone()),
        }
    }
    if label_cols.is_empty() {
        return Err(Error::Csv {
            path: path.into(),
            line: Some(1),
            column: None,
            message: format!(
                "no label columns: expected 0/1 columns named like the 20 labels ({})",
                labels::long_tail_labels().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    if label_cols.len() > 32 {
        return Err(Error::Invalid(format!(
            "{}: more than 32 label columns",
            path.display()
        )));
    }
    // Canonical order, whatever the file's column order, so models and runs line up.
    let order: Vec<&str> = labels::long_tail_labels().collect();
    label_cols.sort_by_key(|(_, l)| order.iter().position(|o| o == l));

    let mut records = Vec::with_capacity(body.len());
    let mut exactly_one = true;
    for (line, row) in body {
        if row.len() != names.len() {
            return Err(Error::Csv {
                path: path.into(),
                line: Some(*line),
                column: None,
                message: format!("row has {} fields, the header has {}", row.len(), names.len()),
            });
        }
        let image = row[id_col].trim();
        if image.is_empty() {
            return Err(Error::Csv {
                path: path.into(),
                line: Some(*line),
                column: Some(names[id_col].clone()),
                message: "empty id".into(),
            });
        }
        let patient = row[patient_col].trim();
        if patient.is_empty() {
            return Err(Error::Csv {
                path: path.into(),
                line: Some(*line),
                column: Some(names[patient_col].clone()),
                message: "empty patient id".into(),
            });
        }
        let mut targets = 0u32;
        for (bit, (col, _)) in label_cols.iter().enumerate() {
            let value = row[*col].trim();
            let set = match value {
                "1" | "1.0" => true,
                "0" | "0.0" | "" => false,
                other => {
                    return Err(Error::Csv {
                        path: path.into(),
                        line: Some(*line),
                        column: Some(names[*col].clone()),
                        message: format!("'{other}' is not 0 or 1"),
                    })
                }
            };
            if set {
                targets |= 1 << bit;
            }
        }
        exactly_one &= targets.count_ones() == 1;
        records.push(Record {
            image: image.into(),
            patient: patient.into(),
            targets,
            follow_up: None,
            age: None,
            sex: None,
            view: None,
        });
    }
    let task = if exactly_one {
        Task::SingleLabel
    } else {
        Task::MultiLabel
    };
    let labels = label_cols.iter().map(|(_, l)| l.to_string()).collect();
    Ok((labels, task, records, ignored))
}

fn check_unique_ids(path: &Path, body: &[(u64, csv::StringRecord)], records: &[Record]) -> Result<()> {
    let mut seen: HashMap<&str, u64> = HashMap::with_capacity(records.len());
    for ((line, _), record) in body.iter().zip(records) {
        if let Some(first) = seen.insert(record.image.as_str(), *line) {
            return Err(Error::Csv {
                path: path.into(),
                line: Some(*line),
                column: None,
                message: format!("duplicate image id '{}' (first on line {first})", record.image),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_files_match_labels_by_name_and_refuse_another_label_set() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            LabelTable::load(&path).unwrap()
        };
        let mut train = write("train.csv", "id,subject_id,Effusion,Hernia\na.png,1,1,0\nb.png,2,0,1\n");
        let val = write("val.csv", "id,subject_id,Hernia,Effusion\nc.png,3,1,0\n");
        assert_eq!(train.append(val).unwrap(), 2..3);
        // c.png has Hernia: bit 1 in the training file's order, though column 0 of its own file.
        assert_eq!(train.records[2].targets, 0b10);
        assert_eq!(train.records[2].patient, "3");
        let other = write("other.csv", "id,subject_id,Effusion,Mass\nd.png,4,1,0\n");
        let err = train.append(other).unwrap_err().to_string();
        assert!(err.contains("other.csv") && err.contains("same label columns"), "{err}");

        // One label per row in a multi-label data set's small file is fine; several labels per
        // row in a single-label data set's file is not.
        let multi = write("multi.csv", "id,subject_id,Effusion,Hernia\ne.png,5,1,1\n");
        assert_eq!(multi.task, Task::MultiLabel);
        let err = train.append(multi).unwrap_err().to_string();
        assert!(err.contains("multi.csv") && err.contains("same task"), "{err}");
        let mut multi = write("multi2.csv", "id,subject_id,Effusion,Hernia\ne.png,5,1,1\n");
        let single = write("single.csv", "id,subject_id,Effusion,Hernia\nf.png,6,0,1\n");
        assert_eq!(single.task, Task::SingleLabel);
        assert_eq!(multi.append(single).unwrap(), 1..2);
        assert_eq!(multi.task, Task::MultiLabel);
    }

    #[test]
    fn a_table_restricted_to_a_models_labels_keeps_their_order_and_can_name_no_finding() {
        let mut nih = table(NIH).unwrap();
        let wanted: Vec<String> = ["Emphysema", "no finding", "Cardiomegaly"].map(String::from).to_vec();
        let left_out = nih.restrict_to(&wanted).unwrap();
        assert_eq!(left_out.len(), NIH_FINDINGS.len() - 2);
        assert!(left_out.contains(&"Hernia".to_string()));
        assert_eq!(nih.labels, wanted);
        // Cardiomegaly; Cardiomegaly|Emphysema; No Finding.
        let masks: Vec<u32> = nih.records.iter().map(|r| r.targets).collect();
        assert_eq!(masks, [0b100, 0b101, 0b010]);

        let mut nih = table(NIH).unwrap();
        let err = nih.restrict_to(&["Unicorn".to_string()]).unwrap_err().to_string();
        assert!(err.contains("'Unicorn'") && err.contains("Cardiomegaly"), "{err}");
    }

    const NIH: &str = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n\
00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143\n\
00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143\n\
00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.171,0.171\n";

    fn table(text: &str) -> Result<LabelTable> {
        LabelTable::from_text("fixture.csv", text.to_string())
    }

    #[test]
    fn nih_quirky_header_and_pipe_labels() {
        let t = table(NIH).unwrap();
        assert_eq!(t.format, LabelFormat::NihDataEntry);
        assert_eq!(t.len(), 3);
        let emphysema = t.labels.iter().position(|l| l == "Emphysema").unwrap();
        let cardio = t.labels.iter().position(|l| l == "Cardiomegaly").unwrap();
        assert!(t.records[1].has(emphysema) && t.records[1].has(cardio));
        assert_eq!(t.records[2].targets, 0, "No Finding sets no bit");
        assert_eq!(t.records[1].age, Some(58));
        assert_eq!(t.records[2].sex, Some(Sex::F));
        assert_eq!(t.records[2].view.as_deref(), Some("AP"));
    }

    #[test]
    fn subcutaneous_emphysema_is_not_emphysema() {
        // NIH's 14 findings do not include it: an NIH file naming it is an error, never Emphysema.
        let text = format!("{NIH}00000003_000.png,Subcutaneous Emphysema|Hernia,0,3,74,F,PA,2500,2048,0.168,0.168\n");
        let message = table(&text).expect_err("unknown NIH finding").to_string();
        assert!(
            message.contains("line 5") && message.contains("Subcutaneous Emphysema"),
            "{message}"
        );
    }

    #[test]
    fn kaggle_sample_ages() {
        let text = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y\n\
00000013_005.png,Emphysema|Infiltration|Pleural_Thickening|Pneumothorax,5,13,060Y,M,AP,3056,2544,0.139,0.139\n\
00000013_026.png,Cardiomegaly|Emphysema,26,13,057Y,M,AP,2500,2048,0.168,0.168\n\
00000017_001.png,No Finding,1,17,077Y,M,AP,2500,2048,0.168,0.168\n\
00000030_001.png,Atelectasis,1,30,079M,M,PA,2992,2991,0.143,0.143\n";
        let t = table(text).unwrap();
        assert_eq!(t.format, LabelFormat::KaggleSample);
        assert_eq!(t.records[0].age, Some(60));
        assert_eq!(t.records[3].age, Some(6));
        assert_eq!(t.records[0].targets.count_ones(), 4);
    }

    #[test]
    fn one_hot_multi_and_single_label() {
        let multi =
            "id,subject_id,Pleural Thickening,Hernia,No Finding,Lung Opacity\na.png,1,1,1,0,0\nb.png,2,0,0,1,0\n";
        let t = table(multi).unwrap();
        assert_eq!(t.format, LabelFormat::OneHot);
        assert_eq!(t.task, Task::MultiLabel);
        assert_eq!(t.labels, ["Pleural_Thickening", "Hernia", "No Finding"]);
        assert_eq!(t.ignored_columns, ["Lung Opacity"]);
        assert!(!t.no_finding_is_implicit());

        let single = "id,Hernia,subj_id,No_Finding\na.png,1,7,0\nb.png,0,8,1\n";
        let t = table(single).unwrap();
        assert_eq!(t.task, Task::SingleLabel);
        assert_eq!(t.records[0].patient, "7");
    }

    #[test]
    fn malformed_files_say_where() {
        let cases = [
            ("", "empty"),
            (
                "Image Index,Finding Labels,Follow-up #\n",
                "missing column 'Patient ID'",
            ),
            ("id,Hernia\na.png,1\n", "subject_id"),
            (
                "id,subject_id,Hernia\na.png,1,2\n",
                "line 2, column 'Hernia': '2' is not 0 or 1",
            ),
            (
                "id,subject_id,Hernia\na.png,1,1\na.png,2,0\n",
                "line 3: duplicate image id 'a.png' (first on line 2)",
            ),
            ("id,subject_id,Hernia\na.png,1\n", "line 2: row has 2 fields"),
            ("foo,bar\n1,2\n", "unrecognised header"),
            ("id,subject_id,Hernia\n", "no rows"),
            ("id,subject_id,Lung Opacity\na,1,1\n", "no label columns"),
        ];
        for (text, expected) in cases {
            let message = table(text).expect_err(text).to_string();
            assert!(message.contains("fixture.csv"), "{message}");
            assert!(message.contains(expected), "for {text:?}: {message}");
        }
    }

    #[test]
    fn subset_is_written_in_the_input_format() {
        let text = NIH.lines().take(4).collect::<Vec<_>>().join("\n") + "\n";
        let t = table(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub.csv");
        t.write_subset(&out, &[2, 0]).unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(written, format!("{}\n{}\n{}\n", lines[0], lines[3], lines[1]));
        let back = LabelTable::load(&out).unwrap();
        assert_eq!(back.records[0], t.records[2]);
    }

    #[test]
    fn gzip_is_read_transparently() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        gz.write_all(NIH.lines().take(3).collect::<Vec<_>>().join("\n").as_bytes())
            .unwrap();
        gz.finish().unwrap();
        assert_eq!(LabelTable::load(&path).unwrap().len(), 2);
    }
}
