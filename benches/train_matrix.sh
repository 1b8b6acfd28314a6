#!/bin/bash
# The five models at 128 and 224 px against PyTorch, back to back, one JSON file each in OUT
# (default bench-results/): the run behind BENCHMARKS.md's "Where issue 12 ends" table.
# Run on a quiet machine from the repository root after `cargo build --release`.
set -euo pipefail
out=${1:-bench-results}
mkdir -p "$out"
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
for size in 128 224; do
    for model in simple-cnn resnet-18 mobilenet-v2 densenet-121 efficientnet-b0; do
        echo "$model $size px, load $(cut -d' ' -f1 /proc/loadavg)"
        target/release/cxr8 bench train --model "$model" --size "$size" --batch 16 --steps 5 --warmup 2 \
            --device cpu --threads 2 --json --reference >"$out/$model-$size.json"
    done
done
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import json, sys
print("| model | px | train img/s cxr8 | PyTorch | train ratio | infer img/s cxr8 | PyTorch | infer ratio | peak RSS cxr8 / PyTorch MiB |")
print("|---|---|---|---|---|---|---|---|---|")
for size in (128, 224):
    for model in "simple-cnn resnet-18 mobilenet-v2 densenet-121 efficientnet-b0".split():
        d = json.load(open(f"{sys.argv[1]}/{model}-{size}.json"))
        c, p = d["cxr8"], d["pytorch"]
        print(f"| {model} | {size} | {c['train_images_per_s']:.1f} | {p['train_images_per_s']:.1f} | {d['train_ratio']:.2f}× "
              f"| {c['infer_images_per_s']:.1f} | {p['infer_images_per_s']:.1f} | {d['infer_ratio']:.2f}× "
              f"| {c['peak_rss_bytes'] >> 20} / {p['peak_rss_bytes'] >> 20} |")
PY
