"""Milliseconds of one training step of each template's network, weights stored channels-first (PyTorch's
default) against channels-last (what the 2D templates' build_model returns: templates/_common/common.py).

    python benchmarks/memory_format.py [--rounds 3] [--threads 2]

One step: forward on a random batch, a loss, backward, AdamW. The two layouts alternate round by round on the
same process, so a slower spell of the machine falls on both; per network it prints each layout's median step
and their ratio (channels-last / channels-first: below 1 is faster). The networks are built by the templates'
own model.py at the sizes the bench's cases train (Br35H's 96 px diagnosis, 64 px anomaly, 128 px reports)
and at MONAI's usual ones (ResNet18, DenseNet121 at 224 px), and a 3D segmentation UNet for contrast, which
its template leaves channels-first.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

TEMPLATES = Path(__file__).resolve().parent.parent / "protocol" / "templates"

# (label, template, config, batch shape, steps per round)
CASES = [
    ("diagnosis cnn 96 px", "diagnosis", {"model": "cnn"}, (32, 1, 96, 96), 20),
    ("diagnosis resnet18 96 px", "diagnosis", {"model": "resnet18"}, (32, 1, 96, 96), 3),
    ("diagnosis densenet121 224 px", "diagnosis", {"model": "densenet121"}, (8, 1, 224, 224), 2),
    ("anomaly autoencoder 64 px", "anomaly_detection", {"channels": [16, 32, 64, 128]}, (32, 1, 64, 64), 20),
    ("report generator 128 px", "report_generation", {}, (32, 1, 128, 128), 10),
    ("segmentation unet 3D 64^3", "segmentation", {"model": "unet"}, (1, 1, 64, 64, 64), 3),
]
LAYOUT = {4: torch.channels_last, 5: torch.channels_last_3d}


def template_model(template: str):
    """The template's model module, imported from its folder (common.py beside it, as in a workspace)."""
    for name in ("model", "common", "engine"):
        sys.modules.pop(name, None)
    sys.path[:0] = [str(TEMPLATES / template), str(TEMPLATES / "_common")]
    try:
        return importlib.import_module("model")
    finally:
        del sys.path[:2]


def network(module, template: str, extra: dict, shape: tuple) -> torch.nn.Module:
    cfg = {"spatial_dims": len(shape) - 2, "in_channels": shape[1], "num_classes": 2,
           "image_size": list(shape[2:]), **extra}
    net = module.build_model(cfg, 60) if template == "report_generation" else module.build_model(cfg)
    return net.to(memory_format=torch.contiguous_format)  # channels-first; the caller picks the layout


def step_seconds(net: torch.nn.Module, template: str, shape: tuple, steps: int) -> float:
    torch.manual_seed(0)
    x = torch.rand(shape)
    words = torch.randint(3, 60, (shape[0], 30))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step():
        out = net(x, words) if template == "report_generation" else net(x)
        loss = out.float().pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # first call: allocations and kernel choices
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds; ms per training step")
    print(f"{'network':32s} {'channels-first':>15s} {'channels-last':>14s} {'ratio':>6s}")
    for label, template, extra, shape, steps in CASES:
        module = template_model(template)
        times = {"first": [], "last": []}
        for _ in range(args.rounds):
            for layout in ("first", "last"):
                net = network(module, template, extra, shape)
                if layout == "last":
                    net = net.to(memory_format=LAYOUT[len(shape)])
                times[layout].append(step_seconds(net, template, shape, steps))
        first, last = (statistics.median(times[k]) * 1000 for k in ("first", "last"))
        print(f"{label:32s} {first:15.1f} {last:14.1f} {last / first:6.2f}", flush=True)


if __name__ == "__main__":
    main()
