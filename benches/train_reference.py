"""PyTorch reference for `cxr8 bench train`: the same architectures as src/model (1-channel
input, bias-free convs followed by the chosen norm, the same channel scaling, global average
pooling, a linear head with 14 logits), trained on random inputs with BCE-with-logits and Adam
(eps 1e-8), timed the same way. Prints one JSON object.

Written without torchvision so that width multipliers and norms follow cxr8's rules exactly.
"""

import argparse
import json
import platform
import resource
import time
import warnings

# torch warns at import when numpy is absent; nothing here needs numpy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LABELS = 14


def scale_channels(channels, width):
    """cxr8's rule: round to a multiple of 4, at least 8 (model/layers.rs)."""
    return max(int(round(channels * width / 4)) * 4, 8)


def norm_layer(kind, channels):
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in range(min(32, channels), 0, -1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ValueError(f"unknown norm {kind}")


def conv(cin, cout, kernel, stride=1, groups=1):
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)


def conv_norm(norm, cin, cout, kernel, stride=1, groups=1):
    return nn.Sequential(conv(cin, cout, kernel, stride, groups), norm_layer(norm, cout))


class SimpleCnn(nn.Module):
    def __init__(self, norm, width):
        super().__init__()
        blocks, cin = [], 1
        for c in (32, 64, 128, 256):
            cout = scale_channels(c, width)
            blocks.append(conv_norm(norm, cin, cout, 3))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cin

    def forward(self, x):
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2, 2)
            x = F.relu(block(x))
        return x


class BasicBlock(nn.Module):
    def __init__(self, norm, cin, cout, stride):
        super().__init__()
        self.conv = conv_norm(norm, cin, cout, 3, stride)
        self.out = conv_norm(norm, cout, cout, 3)
        self.shortcut = conv_norm(norm, cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.out(F.relu(self.conv(x))) + identity)


class ResNet18(nn.Module):
    def __init__(self, norm, width):
        super().__init__()
        stem = scale_channels(64, width)
        self.stem = conv_norm(norm, 1, stem, 7, 2)
        blocks, cin = [], stem
        for stage in range(4):
            cout = scale_channels(64 << stage, width)
            for index in range(2):
                blocks.append(BasicBlock(norm, cin, cout, 2 if stage > 0 and index == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = cin

    def forward(self, x):
        return self.blocks(F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1))


class InvertedResidual(nn.Module):
    def __init__(self, norm, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        self.expand = conv_norm(norm, cin, hidden, 1) if expansion != 1 else None
        self.depthwise = conv_norm(norm, hidden, hidden, 3, stride, hidden)
        self.project = conv_norm(norm, hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x if self.expand is None else F.relu6(self.expand(x))
        y = self.project(F.relu6(self.depthwise(y)))
        return y + x if self.residual else y


class MobileNetV2(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, norm, width):
        super().__init__()
        stem = scale_channels(32, width)
        self.stem = conv_norm(norm, 1, stem, 3, 2)
        blocks, cin = [], stem
        for expansion, c, repeats, first_stride in self.SETTINGS:
            cout = scale_channels(c, width)
            for index in range(repeats):
                blocks.append(InvertedResidual(norm, cin, cout, first_stride if index == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = scale_channels(1280, width)
        self.last = conv_norm(norm, cin, self.out_channels, 1)

    def forward(self, x):
        return F.relu6(self.last(self.blocks(F.relu6(self.stem(x)))))


class DenseLayer(nn.Module):
    def __init__(self, norm, cin, growth):
        super().__init__()
        self.norm1 = norm_layer(norm, cin)
        self.conv1 = conv(cin, 4 * growth, 1)
        self.norm2 = norm_layer(norm, 4 * growth)
        self.conv2 = conv(4 * growth, growth, 3)

    def forward(self, x):
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class DenseNet121(nn.Module):
    def __init__(self, norm, width):
        super().__init__()
        growth, channels = scale_channels(32, width), scale_channels(64, width)
        self.stem = conv(1, channels, 7, 2)
        self.stem_norm = norm_layer(norm, channels)
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for index, count in enumerate((6, 12, 24, 16)):
            self.blocks.append(nn.ModuleList(DenseLayer(norm, channels + i * growth, growth) for i in range(count)))
            channels += count * growth
            if index < 3:
                self.transitions.append(
                    nn.Sequential(norm_layer(norm, channels), nn.ReLU(), conv(channels, channels // 2, 1), nn.AvgPool2d(2, 2))
                )
                channels //= 2
        self.final_norm = norm_layer(norm, channels)
        self.out_channels = channels

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem_norm(self.stem(x))), 3, 2, 1)
        for index, block in enumerate(self.blocks):
            for layer in block:
                # Concatenation per layer, as cxr8 does (torchvision keeps a list instead).
                x = torch.cat([x, layer(x)], 1)
            if index < len(self.transitions):
                x = self.transitions[index](x)
        return F.relu(self.final_norm(x))


class SqueezeExcite(nn.Module):
    """On pooled features with linear layers (with bias), as cxr8 does (model/efficientnet.rs)."""

    def __init__(self, channels, squeezed):
        super().__init__()
        self.reduce = nn.Linear(channels, squeezed)
        self.expand = nn.Linear(squeezed, channels)

    def forward(self, x):
        scale = torch.sigmoid(self.expand(F.silu(self.reduce(x.mean(dim=(2, 3))))))
        return x * scale[:, :, None, None]


class MbConv(nn.Module):
    def __init__(self, norm, cin, cout, kernel, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        self.expand = conv_norm(norm, cin, hidden, 1) if expansion != 1 else None
        self.depthwise = conv_norm(norm, hidden, hidden, kernel, stride, hidden)
        self.squeeze_excite = SqueezeExcite(hidden, max(cin // 4, 1))
        self.project = conv_norm(norm, hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x if self.expand is None else F.silu(self.expand(x))
        y = self.project(self.squeeze_excite(F.silu(self.depthwise(y))))
        return y + x if self.residual else y


class EfficientNetB0(nn.Module):
    # (expansion, kernel, first stride, output channels, repeats); no stochastic depth, as cxr8.
    STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

    def __init__(self, norm, width):
        super().__init__()
        stem = scale_channels(32, width)
        self.stem = conv_norm(norm, 1, stem, 3, 2)
        blocks, cin = [], stem
        for expansion, kernel, first_stride, c, repeats in self.STAGES:
            cout = scale_channels(c, width)
            for index in range(repeats):
                blocks.append(MbConv(norm, cin, cout, kernel, first_stride if index == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = scale_channels(1280, width)
        self.head = conv_norm(norm, cin, self.out_channels, 1)

    def forward(self, x):
        return F.silu(self.head(self.blocks(F.silu(self.stem(x)))))


BACKBONES = {
    "simple-cnn": SimpleCnn,
    "resnet-18": ResNet18,
    "mobilenet-v2": MobileNetV2,
    "densenet-121": DenseNet121,
    "efficientnet-b0": EfficientNetB0,
}


class Classifier(nn.Module):
    def __init__(self, model, norm, width):
        super().__init__()
        self.backbone = BACKBONES[model](norm, width)
        features = self.backbone.out_channels
        # simple-cnn has a dense layer with ReLU before the head (model/classifier.rs).
        self.hidden = nn.Linear(features, scale_channels(128, width)) if model == "simple-cnn" else None
        self.head = nn.Linear(self.hidden.out_features if self.hidden else features, LABELS)

    def forward(self, x):
        x = self.backbone(x).mean(dim=(2, 3))
        if self.hidden is not None:
            x = F.relu(self.hidden(x))
        return self.head(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(BACKBONES), required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--norm", choices=["batch", "group", "layer", "instance"], default="batch")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: this torch ({torch.__version__}) sees no usable GPU")
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    model = Classifier(args.model, args.norm, args.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    images = torch.randn(args.batch, 1, args.size, args.size, device=device)
    targets = (torch.rand(args.batch, LABELS, device=device) < 0.3).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(images), targets)
        value = loss.item()  # cxr8's runner reads the loss every step too
        loss.backward()
        optimizer.step()
        return value

    model.train()
    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    train_seconds = time.perf_counter() - start

    model.eval()
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(images).sum().item()
        start = time.perf_counter()
        for _ in range(args.steps):
            model(images).sum().item()
        infer_seconds = time.perf_counter() - start

    timed = args.steps * args.batch
    print(
        json.dumps(
            {
                "model": args.model,
                "torch_version": torch.__version__,
                "python_version": platform.python_version(),
                "threads": torch.get_num_threads(),
                "params": sum(p.numel() for p in model.parameters()),
                "train_ms_per_step": 1e3 * train_seconds / args.steps,
                "train_images_per_s": timed / train_seconds,
                "infer_ms_per_batch": 1e3 * infer_seconds / args.steps,
                "infer_images_per_s": timed / infer_seconds,
                "final_loss": loss,
                "peak_rss_bytes": peak_rss_bytes(),
                "device": torch.cuda.get_device_name(device) if args.device == "cuda" else "cpu",
                # Peak tensor memory PyTorch's allocator handed out on the GPU (its cache can hold more).
                "peak_cuda_bytes": torch.cuda.max_memory_allocated(device) if args.device == "cuda" else None,
            }
        )
    )


def peak_rss_bytes():
    """This process's own peak resident memory. Not ru_maxrss: Linux carries that across exec, so
    it would report the cxr8 bench that started this script if cxr8 had used more."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
