"""Diagnosis networks: build_model(cfg) -> nn.Module mapping (B, C, *size) to (B, num_classes) logits."""

from __future__ import annotations

import torch
from torch import nn

from common import channels_last


class CompactCNN(nn.Module):
    """A stride-2 stem conv, then one [max-pool, conv3-BN-ReLU] block per further channel count,
    global average pooling, dropout and a linear head. 2D or 3D (spatial_dims).

    With channels (16, 32, 64, 128, 256): about 0.4 M parameters and ~45 M multiply-adds
    per 96x96 image, about 1,000 training images/s on 2 CPU cores.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int,
                 channels=(16, 32, 64, 128, 256), dropout: float = 0.2):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        layers = [conv(in_channels, channels[0], 3, stride=2, padding=1, bias=False), norm(channels[0]),
                  nn.ReLU(inplace=True)]
        for prev, ch in zip(channels[:-1], channels[1:]):
            layers += [pool(2), conv(prev, ch, 3, padding=1, bias=False), norm(ch), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def build_model(cfg: dict) -> nn.Module:
    """The network named by cfg['model'], randomly initialised (no downloads); a 2D one in channels-last
    memory layout (common.channels_last)."""
    net = _network(cfg)
    return channels_last(net) if int(cfg["spatial_dims"]) == 2 else net


def _network(cfg: dict) -> nn.Module:
    dims, cin, n = int(cfg["spatial_dims"]), int(cfg["in_channels"]), int(cfg["num_classes"])
    name = cfg.get("model", "cnn")
    if name == "cnn":
        channels = tuple(cfg.get("channels") or (16, 32, 64, 128, 256))
        return CompactCNN(dims, cin, n, channels, float(cfg.get("dropout", 0.2)))
    if name == "resnet18":
        from monai.networks.nets import resnet18

        return resnet18(spatial_dims=dims, n_input_channels=cin, num_classes=n, pretrained=False)
    if name == "densenet121":
        from monai.networks.nets import DenseNet121

        return DenseNet121(spatial_dims=dims, in_channels=cin, out_channels=n,
                           dropout_prob=float(cfg.get("dropout", 0.2)))
    raise SystemExit(f"model must be one of cnn, resnet18, densenet121, not {name!r}")


if __name__ == "__main__":
    import json
    import sys

    cfg = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "config.json"))
    model = build_model(cfg)
    x = torch.zeros(2, int(cfg["in_channels"]), *cfg["image_size"])
    print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters; output", tuple(model(x).shape))
