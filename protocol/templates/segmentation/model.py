"""Segmentation networks: build_model(cfg) -> nn.Module mapping (B, C, *size) to (B, num_classes, *size) logits."""

from __future__ import annotations

from torch import nn


def build_model(cfg: dict) -> nn.Module:
    """MONAI UNet (default) or BasicUNet, randomly initialised (no downloads)."""
    dims, cin, n = int(cfg["spatial_dims"]), int(cfg["in_channels"]), int(cfg["num_classes"])
    channels = list(cfg.get("channels") or [16, 32, 64, 128])
    name = cfg.get("model", "unet")
    if name == "unet":
        from monai.networks.nets import UNet

        return UNet(spatial_dims=dims, in_channels=cin, out_channels=n, channels=channels,
                    strides=[2] * (len(channels) - 1), num_res_units=int(cfg.get("num_res_units", 1)),
                    norm=cfg.get("norm", "instance"))
    if name == "basic_unet":
        from monai.networks.nets import BasicUNet

        features = channels if len(channels) == 6 else (16, 16, 32, 64, 128, 16)
        return BasicUNet(spatial_dims=dims, in_channels=cin, out_channels=n, features=features,
                         norm=cfg.get("norm", "instance"))
    raise SystemExit(f"model must be unet or basic_unet, not {name!r}")


def inference_roi(cfg: dict, shape) -> list[int]:
    """Sliding-window size: patch_size, or the whole image rounded up to a multiple of 16."""
    if cfg.get("patch_size"):
        return list(cfg["patch_size"])
    return [(-(-int(s) // 16)) * 16 for s in shape]


if __name__ == "__main__":
    import json
    import sys

    import torch

    cfg = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "config.json"))
    model = build_model(cfg)
    size = cfg.get("patch_size") or cfg.get("image_size") or [64] * int(cfg["spatial_dims"])
    x = torch.zeros(1, int(cfg["in_channels"]), *size)
    print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters; output", tuple(model(x).shape))
