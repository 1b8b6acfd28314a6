#!/usr/bin/env python3
"""Logit parity between cxr8 and torchvision for weight import and export (issue 15).

Two subcommands, both offline (``weights=None`` everywhere: nothing is downloaded):

``make``
    Builds each torchvision architecture that cxr8 implements, fills every parameter and every
    batch-norm buffer with seeded random values, and writes the state dict in the formats the
    importer must read (f32 ``.pth`` and ``.safetensors``, f16 ``.safetensors``, bf16 ``.pth``),
    a seeded 1-channel input batch, and PyTorch's logits for it. cxr8 imports the weights, folds
    the RGB stem to one channel, runs the same input and compares with these logits.

``check``
    Loads a safetensors file that cxr8 exported (torchvision key layout with a 1-channel stem)
    into torchvision with ``strict=True``, runs the 1-channel input and compares PyTorch's logits
    with the ones cxr8 wrote. Prints one markdown table row; exits 1 above the tolerance.

Run it with the venv next to this file::

    benches/.venv/bin/python benches/weights_parity.py make --out /tmp/parity
    benches/.venv/bin/python benches/weights_parity.py check --model resnet-18 \\
        --exported resnet-18.export.safetensors --input /tmp/parity/input.safetensors \\
        --cxr8-logits resnet-18.cxr8-logits.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
import zlib
from pathlib import Path

import torch
import torchvision.models as tvm
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

# cxr8 architecture name -> (torchvision constructor, dotted path of the stem convolution).
# The stem is the one layer whose shape differs: cxr8 takes 1-channel images.
ARCHITECTURES = {
    "resnet-18": (tvm.resnet18, "conv1"),
    "resnet-34": (tvm.resnet34, "conv1"),
    "resnet-50": (tvm.resnet50, "conv1"),
    "densenet-121": (tvm.densenet121, "features.conv0"),
    "mobilenet-v2": (tvm.mobilenet_v2, "features.0.0"),
    "efficientnet-b0": (tvm.efficientnet_b0, "features.0.0"),
}

# The acceptance bound on max |Δlogit|.
DEFAULT_TOLERANCE = 1e-4

# Random images on which `randomise` sets each batch norm's output scale.
CALIBRATION_BATCH = 16


def build(name: str, num_classes: int) -> nn.Module:
    constructor, _ = ARCHITECTURES[name]
    return constructor(weights=None, num_classes=num_classes)


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, new)


def fold_stem(model: nn.Module, name: str) -> nn.Module:
    """Swaps the RGB stem for a 1-channel one, in place.

    A gray image repeated on three channels gives Σ_c w[:, c] * x, so the 1-channel filter is the
    sum of the three. That is how cxr8 imports RGB weights; `make` checks the identity here so
    that a parity failure on the Rust side cannot be blamed on the folding itself.
    """
    _, stem_path = ARCHITECTURES[name]
    old = model.get_submodule(stem_path)
    new = one_channel_like(old)
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
    replace_module(model, stem_path, new)
    return model


def one_channel_like(conv: nn.Conv2d) -> nn.Conv2d:
    """The same convolution with one input channel (and fresh weights)."""
    return nn.Conv2d(
        1,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )


def seeded_generator(seed: int, name: str) -> torch.Generator:
    # Keyed by name as well as seed, so adding or reordering models changes no other model's
    # weights and reference files stay comparable across script versions.
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


@torch.no_grad()
def randomise(model: nn.Module, generator: torch.Generator, image_size: int) -> None:
    """Fills every parameter and batch-norm buffer with non-trivial random values.

    Default initialisation leaves γ = 1, β = 0, running mean 0 and variance 1, and zero biases:
    an importer that dropped or swapped any of those would still match. Here each is distinct:
    running mean ~ N(0, 0.1²), running variance ~ U(0.5, 1.5), γ ~ U(0.5, 1.5), β ~ N(0, 0.1²).

    Random running statistics do not describe the activations they normalise, so on their own
    they let a ResNet's residual sums grow geometrically (|logits| in the thousands for
    resnet-50), where an absolute 1e-4 bound would measure f32 rounding rather than the mapping.
    Each batch norm's γ and β are therefore multiplied by one scalar, chosen on random gray
    images so that the layer's output has unit RMS. One scalar per layer, not per channel:
    fitting per-channel statistics instead (a train-mode pass) blows up the near-constant
    channels of efficientnet-b0's depthwise layers on any other input.
    """
    batch_norms = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # He-normal over fan-in keeps activations O(1) through conv + ReLU stacks.
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            if module.bias is not None:  # squeeze-excitation's 1×1 convolutions
                module.bias.normal_(0.0, 0.1, generator=generator)
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features), generator=generator)
            module.bias.normal_(0.0, 0.1, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5, generator=generator)
            module.bias.normal_(0.0, 0.1, generator=generator)
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            # Anything but the default 0: cxr8 has no such counter and must drop it on import.
            module.num_batches_tracked.fill_(int(torch.randint(2, 10_000, (1,), generator=generator)))
            batch_norms.append(module)

    def rescale(norm: nn.BatchNorm2d, _inputs, output: torch.Tensor) -> torch.Tensor:
        # In eval mode the output is affine in (γ, β), so scaling both scales it exactly;
        # returning the scaled output lets every later layer calibrate against it in this pass.
        gain = 1.0 / output.pow(2).mean().sqrt().clamp_min(1e-6)
        norm.weight.mul_(gain)
        norm.bias.mul_(gain)
        return output * gain

    model.eval()
    hooks = [norm.register_forward_hook(rescale) for norm in batch_norms]
    # Gray images repeated on three channels, the same distribution as the test input.
    gray = torch.randn(CALIBRATION_BATCH, 1, image_size, image_size, generator=generator)
    model(gray.expand(-1, 3, -1, -1).contiguous())
    for hook in hooks:
        hook.remove()


def state_dict_as(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Float tensors in `dtype`; integer buffers (num_batches_tracked) kept as int64."""
    return {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().clone().contiguous()
        for key, value in model.state_dict().items()
    }


def rounded_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The model with its float tensors rounded through `dtype` and back to f32.

    These are the values cxr8 gets when it imports the f16 / bf16 files into its f32 model, so
    logits computed from them are the reference for those imports.
    """
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for value in rounded.state_dict().values():
            if value.is_floating_point():
                value.copy_(value.to(dtype).to(torch.float32))
    return rounded


@torch.no_grad()
def logits_rgb(model: nn.Module, gray: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(gray.expand(-1, 3, -1, -1).contiguous())


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise SystemExit(f"logit shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.double() - b.double()).abs().max().item()


def command_make(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)  # nothing should draw from the global generator; belt and braces

    # Already normalised, like what cxr8 feeds its models after (pixel - mean) / std.
    input_generator = torch.Generator().manual_seed(args.seed)
    gray = torch.randn(2, 1, args.image_size, args.image_size, generator=input_generator)
    save_file({"input": gray.contiguous()}, str(out / "input.safetensors"))

    print(f"# {out}: seed {args.seed}, {args.image_size}×{args.image_size} gray input, "
          f"{args.num_classes} classes, torch {torch.__version__}")
    print("| model | params | max abs logit | folded-stem Δ | f16 Δ vs f32 | bf16 Δ vs f32 | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    worst_fold = 0.0
    for name in args.models:
        started = time.perf_counter()
        model = build(name, args.num_classes)
        randomise(model, seeded_generator(args.seed, name), args.image_size)
        model.eval()

        metadata = {"architecture": name, "num_classes": str(args.num_classes), "format": "pt"}
        torch.save(state_dict_as(model, torch.float32), out / f"{name}.pth")
        save_file(state_dict_as(model, torch.float32), str(out / f"{name}.safetensors"), metadata)
        save_file(state_dict_as(model, torch.float16), str(out / f"{name}.f16.safetensors"), metadata)
        torch.save(state_dict_as(model, torch.bfloat16), out / f"{name}.bf16.pth")

        logits = logits_rgb(model, gray)
        save_file({"logits": logits.contiguous()}, str(out / f"{name}.logits.safetensors"))
        reduced = {}
        for tag, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            reduced[tag] = logits_rgb(rounded_copy(model, dtype), gray)
            save_file({"logits": reduced[tag].contiguous()}, str(out / f"{name}.{tag}.logits.safetensors"))

        # The identity cxr8 relies on: the folded 1-channel stem on the gray image equals the
        # RGB stem on the gray image repeated three times.
        with torch.no_grad():
            folded = fold_stem(copy.deepcopy(model), name).eval()(gray)
        fold_delta = max_abs_diff(folded, logits)
        worst_fold = max(worst_fold, fold_delta)

        params = sum(p.numel() for p in model.parameters())
        print(
            f"| {name} | {params:,} | {logits.abs().max().item():.3f} | {fold_delta:.2e} "
            f"| {max_abs_diff(reduced['f16'], logits):.2e} | {max_abs_diff(reduced['bf16'], logits):.2e} "
            f"| {time.perf_counter() - started:.1f} |",
            flush=True,
        )
    if worst_fold > args.tol:
        print(f"folding the stem changed logits by {worst_fold:.2e} > {args.tol:g}", file=sys.stderr)
        return 1
    return 0


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def command_check(args: argparse.Namespace) -> int:
    metadata = read_metadata(args.exported)
    missing = [key for key in ("architecture", "labels", "image_size", "mean", "std") if key not in metadata]
    if missing:
        print(f"{args.exported}: metadata lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    if metadata["architecture"] != args.model:
        print(f"{args.exported}: architecture {metadata['architecture']!r}, expected {args.model!r}",
              file=sys.stderr)
        return 2
    labels = json.loads(metadata["labels"])
    if not isinstance(labels, list) or not labels:
        print(f"{args.exported}: labels should be a non-empty JSON array", file=sys.stderr)
        return 2
    print(f"# {args.exported.name}: {len(labels)} labels, image_size {metadata['image_size']}, "
          f"mean {metadata['mean']}, std {metadata['std']}", file=sys.stderr)

    model = build(args.model, len(labels))
    _, stem_path = ARCHITECTURES[args.model]
    replace_module(model, stem_path, one_channel_like(model.get_submodule(stem_path)))
    # load_file gives a plain dict (no `_metadata`), so torch treats a missing
    # num_batches_tracked as a legacy checkpoint and fills it in; every other key must match.
    # Half-precision exports are widened by load_state_dict's copy into the f32 parameters.
    state = load_file(str(args.exported))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches, e.g. a Linear left in Burn's [in, out]
        print(f"{args.exported}: {error}", file=sys.stderr)
        return 2
    if result.missing_keys or result.unexpected_keys:
        for kind, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
                print(f"{kind} keys: {shown}", file=sys.stderr)
        return 2
    model.eval()

    gray = load_file(str(args.input))["input"].float()
    with torch.no_grad():
        ours = model(gray)
    theirs = load_file(str(args.cxr8_logits))["logits"].float()
    delta = max_abs_diff(ours, theirs)
    dtypes = sorted({str(value.dtype).removeprefix("torch.") for value in state.values() if value.is_floating_point()})

    cells = [args.model, args.exported.name, "/".join(dtypes), "×".join(map(str, ours.shape)), f"{delta:.2e}"]
    if args.reference is not None:
        # Optional: the `make` logits, for a round trip (import → export) of the same weights.
        reference = load_file(str(args.reference))["logits"].float()
        cells.append(f"{max_abs_diff(ours, reference):.2e}")
    cells.append("ok" if delta <= args.tol else f"FAIL (> {args.tol:g})")
    if args.header:
        header = ["model", "exported file", "dtype", "logits", "max abs Δ vs cxr8"]
        if args.reference is not None:
            header.append("max abs Δ vs make")
        header.append("result")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
    print("| " + " | ".join(cells) + " |")
    return 0 if delta <= args.tol else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("make", help="write random torchvision weights, an input and reference logits")
    make.add_argument("--out", required=True, help="output directory (created if missing)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--image-size", type=int, default=64, help="side of the square input (cxr8 needs >= 64)")
    make.add_argument("--num-classes", type=int, default=5)
    make.add_argument("--models", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES))
    make.add_argument("--tol", type=float, default=DEFAULT_TOLERANCE, help="bound for the folded-stem check")
    make.set_defaults(run=command_make)

    check = commands.add_parser("check", help="run a cxr8 export in torchvision and compare logits")
    check.add_argument("--exported", type=Path, required=True, help="safetensors file written by cxr8")
    check.add_argument("--model", required=True, choices=list(ARCHITECTURES))
    check.add_argument("--input", type=Path, required=True, help="input.safetensors from `make`")
    check.add_argument("--cxr8-logits", type=Path, required=True,
                       help="safetensors with cxr8's logits (key 'logits') from the weights as exported: "
                       "for an f16/bf16 export, cxr8's logits with its weights rounded the same way")
    check.add_argument("--reference", type=Path, default=None,
                       help="optional <name>.logits.safetensors from `make`, for an extra column")
    check.add_argument("--tol", type=float, default=DEFAULT_TOLERANCE)
    check.add_argument("--header", action="store_true", help="print the markdown table header first")
    check.set_defaults(run=command_check)

    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
