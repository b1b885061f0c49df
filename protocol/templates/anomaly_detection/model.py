"""Anomaly-detection network: a convolutional autoencoder with a dense bottleneck, and its scores.

build_model(cfg) maps (B, C, *size) to a reconstruction of the same shape;
anomaly_scores(x, recon, how) gives one score per image (higher = more anomalous).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from common import channels_last


class ConvAutoencoder(nn.Module):
    """Encoder: stride-2 conv-BN-LeakyReLU blocks; dense code of latent_dim; mirrored decoder.

    The narrow dense code keeps the model from copying its input, so what it cannot
    reconstruct (structures unlike the normal training images) gives a high error.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_size, channels=(16, 32, 64, 128),
                 latent_dim: int = 128):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        deconv = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        enc, prev = [], in_channels
        for ch in channels:
            enc += [conv(prev, ch, 4, stride=2, padding=1, bias=False), norm(ch), nn.LeakyReLU(0.2, inplace=True)]
            prev = ch
        self.encoder = nn.Sequential(*enc)
        self.bottom = [int(s) // 2 ** len(channels) for s in image_size]
        flat = channels[-1] * math.prod(self.bottom)
        self.to_code = nn.Linear(flat, latent_dim)
        self.from_code = nn.Linear(latent_dim, flat)
        dec = []
        rev = list(channels[::-1])
        for ch, nxt in zip(rev, rev[1:]):
            dec += [deconv(ch, nxt, 4, stride=2, padding=1, bias=False), norm(nxt), nn.LeakyReLU(0.2, inplace=True)]
        dec += [deconv(rev[-1], in_channels, 4, stride=2, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.to_code(self.encoder(x).flatten(1))
        h = self.from_code(z).view(x.shape[0], self.channels[-1], *self.bottom)
        return self.decoder(h)


def build_model(cfg: dict) -> nn.Module:
    """The autoencoder, randomly initialised; a 2D one in channels-last memory layout (common.channels_last)."""
    net = ConvAutoencoder(int(cfg["spatial_dims"]), int(cfg["in_channels"]), cfg["image_size"],
                          tuple(cfg.get("channels") or (16, 32, 64, 128)), int(cfg.get("latent_dim", 128)))
    return channels_last(net) if int(cfg["spatial_dims"]) == 2 else net


def anomaly_scores(x: torch.Tensor, recon: torch.Tensor, how: str = "mae") -> torch.Tensor:
    """One score per image: mae (the default), mse, or top_mse (mean of the largest 2% squared errors).

    mae weighs the many small residuals as much as the few large ones; on Br35H the largest residuals
    (top_mse) sit on normal images as often as on tumours, and mse ranked near chance (README.md)."""
    err = (x - recon).flatten(1)
    if how == "mse":
        return (err ** 2).mean(1)
    if how == "mae":
        return err.abs().mean(1)
    if how == "top_mse":
        k = max(1, int(0.02 * err.shape[1]))
        return (err ** 2).topk(k, dim=1).values.mean(1)
    raise SystemExit(f"score must be mse, mae or top_mse, not {how!r}")


if __name__ == "__main__":
    import json
    import sys

    cfg = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "config.json"))
    model = build_model(cfg)
    x = torch.zeros(2, int(cfg["in_channels"]), *cfg["image_size"])
    print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters; output", tuple(model(x).shape))
