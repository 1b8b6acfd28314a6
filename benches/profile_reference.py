"""Where a PyTorch training step's CPU time goes, for the same models and shapes as
`cxr8 bench train` (benches/train_reference.py's models): torch.profiler over a few steps, self
CPU time grouped the way BENCHMARKS.md groups cxr8's perf profile.

    benches/.venv/bin/python benches/profile_reference.py --model resnet-18 --size 128 --batch 16 --threads 2
"""

import argparse
import collections
import re

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from train_reference import BACKBONES, LABELS, Classifier

# Operator name patterns → the categories of BENCHMARKS.md's cxr8 profile (first match wins).
CATEGORIES = [
    ("convolution forward", r"mkldnn_convolution$|^aten::_convolution$|^aten::convolution$|thnn_conv"),
    ("convolution backward (input and weight gradients)", r"convolution_backward"),
    ("matrix products (linear)", r"addmm|^aten::mm$|matmul"),
    ("batch norm (forward and backward)", r"batch_norm"),
    ("activations (ReLU, ReLU6, SiLU, sigmoid) and their backward", r"relu|hardtanh|silu|sigmoid|threshold"),
    ("pooling and concatenation", r"pool|^aten::cat$"),
    ("optimiser (Adam)", r"Optimizer|adam|_foreach|lerp|addcdiv|addcmul"),
    ("element-wise and reductions", r"add|mul|div|sum|mean|sub|copy|fill|zero|clone|where|neg"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(BACKBONES), required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    model = Classifier(args.model, "batch", 1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    images = torch.randn(args.batch, 1, args.size, args.size)
    targets = (torch.rand(args.batch, LABELS) < 0.3).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(images), targets)
        loss.item()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    totals = collections.Counter()
    for event in prof.key_averages():
        for name, pattern in CATEGORIES:
            if re.search(pattern, event.key):
                totals[name] += event.self_cpu_time_total
                break
        else:
            totals["other"] += event.self_cpu_time_total
    whole = sum(totals.values()) or 1
    print(f"{args.model}, {args.size} px, batch {args.batch}, {args.threads} threads, {args.steps} steps")
    for name, _ in CATEGORIES + [("other", "")]:
        print(f"{100 * totals[name] / whole:5.1f} %  {name}")


if __name__ == "__main__":
    main()
