"""Saliency maps for a trained diagnosis model: GradCAM and occlusion sensitivity (MONAI).

Both work on images as the workspace's ``predict.Predictor`` prepares them
(``predictor.prepare(path)`` -> (C, *image_size) tensor in [0, 1]) and return one
map per image at that size, normalised to [0, 1] (1 = most important), for the
positive class of a binary model or else the predicted class.

GradCAM (Selvaraju et al.) weighs the activations of the network's last conv layer
by their mean gradient: cheap (one forward and backward pass per batch), but only
as fine as that layer's grid (e.g. 3x3 for a 48 px image with the template's
compact CNN), then upsampled. Occlusion sensitivity is model-agnostic and finer:
the drop of the class probability when a patch is replaced by the image mean; it
costs one forward pass per patch position, so it runs on a few sample images only.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch
from torch import nn

CONV_TYPES = (nn.Conv2d, nn.Conv3d)


def last_conv_layer(network: nn.Module) -> str:
    """Dotted name of the network's last Conv2d/Conv3d (in registration order), GradCAM's target layer."""
    names = [name for name, module in network.named_modules() if isinstance(module, CONV_TYPES)]
    if not names:
        raise ValueError(f"{type(network).__name__} has no Conv2d/Conv3d layer: GradCAM needs one")
    return names[-1]


def target_classes(predictor, logits: torch.Tensor) -> torch.Tensor:
    """Per image: the positive class (binary models) or the predicted class."""
    if predictor.positive is not None:
        return torch.full((logits.shape[0],), int(predictor.positive), dtype=torch.long)
    return logits.argmax(dim=1).cpu()


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """(B, *spatial) -> each map scaled to [0, 1] by its own min and max (a flat map becomes 0)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo).clamp(min=1e-12)
    out = (flat - lo[:, None]) / span[:, None]
    out[(hi - lo) <= 1e-12] = 0.0
    return out.reshape(maps.shape)


@torch.no_grad()
def class_probabilities(predictor, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Softmax probabilities (N, classes) for prepared images (N, C, *size), batched."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(predictor.device)
        out.append(torch.softmax(predictor.network(x).float(), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros((0, len(predictor.names)))


class LogProbabilities(nn.Module):
    """The network with log-softmax on top: GradCAM's class score becomes log p(class).

    With a softmax head only logit differences matter, so one class's raw logit may fall
    everywhere even where that class's evidence lies (a 2-class model can encode "yes" as
    "less no"); the gradient of log p(c) is (1 - p(c)) times that of z_c minus the
    probability-weighted other logits, for two classes the log-odds."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net(x).float(), dim=1)


def gradcam_for(predictor):
    """A MONAI GradCAM on a private copy of the predictor's network (hooks never touch the
    predictor's; in-place activations switched off, since an in-place op right after the
    hooked layer breaks its backward hook), cached on the predictor."""
    from monai.visualize import GradCAM

    cam = getattr(predictor, "_medbuilder_gradcam", None)
    if cam is None:
        network = copy.deepcopy(predictor.network).eval()
        for module in network.modules():
            if getattr(module, "inplace", False):
                module.inplace = False
        layer = last_conv_layer(network)
        cam = GradCAM(nn_module=LogProbabilities(network), target_layers=f"net.{layer}", postprocessing=lambda x: x)
        cam.target_layer = layer
        predictor._medbuilder_gradcam = cam
    return cam


def gradcam_maps(predictor, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Raw GradCAM maps (N, *size), non-negative, NOT normalised: the relative mass is what the
    attribution share uses. Batched per target class (MONAI's GradCAM takes one class index or
    the argmax per call)."""
    cam = gradcam_for(predictor)
    probs = class_probabilities(predictor, images)
    classes = target_classes(predictor, probs)
    maps = torch.zeros((len(images), *images.shape[2:]))
    for c in classes.unique().tolist():
        idx = (classes == c).nonzero().flatten()
        for start in range(0, len(idx), batch_size):
            part = idx[start:start + batch_size]
            with torch.enable_grad():
                result = cam(x=images[part].to(predictor.device), class_idx=int(c))
            maps[part] = result[:, 0].detach().float().cpu().clamp(min=0)
    return maps


def gradcam(predictor, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """GradCAM maps (N, *size) normalised to [0, 1] per image."""
    return normalise(gradcam_maps(predictor, images, batch_size))


def occlusion(predictor, image: torch.Tensor, mask_fraction: float = 0.125, overlap: float = 0.25,
              n_batch: int = 64) -> torch.Tensor:
    """Occlusion sensitivity map (*size) in [0, 1] for one prepared image (C, *size): how much
    the target class probability falls when a patch of ~mask_fraction of the side is replaced
    by the image mean (1 = the largest drop; no drop anywhere -> all 0)."""
    from monai.visualize import OcclusionSensitivity

    size = image.shape[1:]
    mask_size = [max(2, int(round(s * mask_fraction))) for s in size]
    network = predictor.network.eval()
    occ = OcclusionSensitivity(nn_module=network, mask_size=mask_size, n_batch=n_batch, overlap=overlap,
                               mode="mean_img", activate=True, verbose=False)
    x = image[None].to(predictor.device)
    with torch.no_grad():
        probs = torch.softmax(network(x).float(), dim=1)[0].cpu()
        with contextlib.redirect_stderr(io.StringIO()):  # tqdm noise, even with verbose=False on some versions
            occ_map, _ = occ(x)
    target = int(target_classes(predictor, probs[None]).item())
    # occ_map: (1, classes, *size): the class probability with each region occluded
    drop = (probs[target] - occ_map[0, target].float().cpu()).clamp(min=0)
    return normalise(drop[None])[0]


def as_numpy_2d(image: torch.Tensor) -> np.ndarray:
    """A prepared (C, H, W) image as a 2D float array (channel mean) for display and detectors."""
    return image.float().mean(dim=0).cpu().numpy()
