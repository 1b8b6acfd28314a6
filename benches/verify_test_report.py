"""Recompute a run's stored held-out test AUROCs with scikit-learn.

cxr8 computes its metrics itself; this script is the outside check a reviewer would run. It reads
the run's test report (`cxr8 train --json` output, or `GET /api/runs/{id}`), the test predictions
(`cxr8 eval --checkpoint RUN --split test --out preds.csv`, or
`GET /api/runs/{id}/predictions.csv?split=test`) and the label file(s) the run used, and compares
`sklearn.metrics.roc_auc_score` and `average_precision_score` per label with the stored values.

    benches/.venv/bin/python benches/verify_test_report.py --report run.json \
        --predictions preds.csv --labels data/demo/Data_Entry_2017.csv [--labels val.csv ...]

Exits 1 when any label differs by more than --tol (default 1e-4).
"""

import argparse
import csv
import gzip
import json
import sys

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

NO_FINDING = "No Finding"


def canonical(name):
    # NIH-CXR-LT spells labels with underscores; cxr8 reports them with spaces.
    return name.replace("_", " ").strip()


def read_rows(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return list(csv.reader(f))


def targets_by_image(paths):
    """Image name -> set of label names, from NIH Data_Entry files or one-hot CSVs."""
    found = {}
    for path in paths:
        rows = read_rows(path)
        header = rows[0]
        if "Finding Labels" in header:
            image, findings = header.index("Image Index"), header.index("Finding Labels")
            for row in rows[1:]:
                names = {canonical(n) for n in row[findings].split("|")} - {NO_FINDING}
                found[row[image]] = names
        else:
            image = header.index("id")
            skip = {"id", "subject_id", "subj_id"}
            labels = [(i, canonical(h)) for i, h in enumerate(header) if h not in skip]
            for row in rows[1:]:
                found[row[image]] = {name for i, name in labels if row[i].strip() in ("1", "1.0")}
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, help="cxr8 train --json output or GET /api/runs/{id}")
    parser.add_argument("--predictions", required=True, help="image,<label>... CSV of the test split")
    parser.add_argument("--labels", required=True, action="append", help="label file(s) the run used")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()

    with open(args.report) as f:
        report = json.load(f)["test"]
    truth = targets_by_image(args.labels)
    with open(args.predictions, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    images = [r[0] for r in rows]
    if len(images) != report["images"]:
        print(f"the CSV has {len(images)} images, the report {report['images']}", file=sys.stderr)
        return 1

    worst, failed = 0.0, False
    print("| label | support | cxr8 AUROC | sklearn AUROC | |Δ| | cxr8 AP | sklearn AP | |Δ| |")
    print("|---|---|---|---|---|---|---|---|")
    for column, label in enumerate(header[1:], start=1):
        scores = np.array([float(r[column]) for r in rows])
        if label == NO_FINDING and all(NO_FINDING not in t for t in truth.values()):
            y = np.array([1 if not truth[i] else 0 for i in images])
        else:
            y = np.array([1 if canonical(label) in truth[i] else 0 for i in images])
        stored = report["labels"][label]
        if y.min() == y.max():
            # One class only: undefined, and cxr8 must say so rather than invent a number.
            ok = stored["auroc"] is None
            failed |= not ok
            print(f"| {label} | {y.sum()} | {stored['auroc']} | undefined | {'ok' if ok else 'MISMATCH'} | | | |")
            continue
        auroc, ap = roc_auc_score(y, scores), average_precision_score(y, scores)
        d_auroc, d_ap = abs(auroc - stored["auroc"]), abs(ap - stored["ap"])
        worst = max(worst, d_auroc, d_ap)
        failed |= d_auroc > args.tol or d_ap > args.tol
        print(
            f"| {label} | {y.sum()} | {stored['auroc']:.6f} | {auroc:.6f} | {d_auroc:.1e} "
            f"| {stored['ap']:.6f} | {ap:.6f} | {d_ap:.1e} |"
        )
    print(f"\nlargest |Δ| {worst:.2e} over {len(header) - 1} labels, {len(images)} test images: "
          f"{'FAIL' if failed else 'ok'} at tolerance {args.tol}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
