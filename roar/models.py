"""Model registry. Every model takes float images in [0, 1]; `build_model` prepends the dataset's
normalisation so attribution maps, fills and masks all live on the [0, 1] image scale."""
from __future__ import annotations

import torch
from torch import nn

from .registry import lookup


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).clamp_min(1e-6))

    def forward(self, x):
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """`net` applied to normalised input. `cam_layer` names the layer Grad-CAM explains."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.cam_layer = getattr(net, "cam_layer", None)

    def forward(self, x):
        return self.net(self.normalize(x))


def _conv_bn(cin, cout, stride=1):
    # ReLU(inplace=False): captum's backward hooks (DeepLift, GuidedBackprop) reject in-place ops.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallCNN(nn.Module):
    """Three conv stages (width, 2·width, 4·width channels) and global pooling; ~28×28 and 32×32 inputs,
    any size works. ~25k parameters at width 16."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(in_channels, width),
            _conv_bn(width, 2 * width), nn.MaxPool2d(2),
            _conv_bn(2 * width, 4 * width), nn.MaxPool2d(2),
        )
        # a 4x4 spatial head (not global pooling) learns in far fewer steps on small data
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * 4 * width, num_classes))
        self.cam_layer = self.features[-2]

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """ResNet-18 adapted to small images (CIFAR style): 3×3 stem, no max-pool, stages of
    width, 2w, 4w, 8w channels (w = 64 is the standard ResNet-18)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.stem = _conv_bn(in_channels, width)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        self.cam_layer = self.layers[-1]

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


class FastResNet(nn.Module):
    """A compact residual net for fast CIFAR-10 retrains (airbench-like shape: conv stem, three
    stages of conv-pool-residual, max-pooled head). Widths width·(1, 2, 4, 8)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]

        def stage(cin, cout):
            return nn.Sequential(_conv_bn(cin, cout), nn.MaxPool2d(2))

        self.prep = _conv_bn(in_channels, w[0])
        self.layer1, self.res1 = stage(w[0], w[1]), nn.Sequential(_conv_bn(w[1], w[1]), _conv_bn(w[1], w[1]))
        self.layer2 = stage(w[1], w[2])
        self.layer3, self.res3 = stage(w[2], w[3]), nn.Sequential(_conv_bn(w[3], w[3]), _conv_bn(w[3], w[3]))
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w[3], num_classes, bias=False))
        self.cam_layer = self.res3

    def forward(self, x):
        x = self.prep(x)
        x = self.layer1(x)
        x = x + self.res1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = x + self.res3(x)
        return self.head(x) * 0.125  # logit scaling keeps the loss well-conditioned at high lr


def _torchvision(arch: str):
    def build(in_channels: int, num_classes: int, width: int = 64):
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        net.cam_layer = net.layer4
        _no_inplace_relu(net)
        return net
    return build


def _no_inplace_relu(net: nn.Module):
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


# registry: spec string -> constructor(in_channels, num_classes, width)
MODELS = {
    "small_cnn": lambda c, k, width=16: SmallCNN(c, k, width),
    "resnet18_small": lambda c, k, width=64: ResNetSmall(c, k, width),
    "fast_resnet": lambda c, k, width=64: FastResNet(c, k, width),
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
}


def build_model(name: str, in_channels: int, num_classes: int, mean, std, width: int | None = None,
                seed: int | None = None) -> NormalizedModel:
    """Build a fresh model; `seed` fixes its initial weights (CPU init, so the same on every device)."""
    ctor = lookup(MODELS, name, "model")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ctor(in_channels, num_classes, width) if width else ctor(in_channels, num_classes)
    else:
        net = ctor(in_channels, num_classes, width) if width else ctor(in_channels, num_classes)
    return NormalizedModel(net, mean, std)
