"""Draw a GENERATED chest-radiograph-like image with one planted finding, and its report.

Radiological convention: the patient's right lung is on the image's left.
Pixel spacing is taken as 0.28 cm (a 36 cm field of view on 128 pixels), so the
nodule sizes and cardiothoracic ratios in the reports match the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIZE = 128
CM_PER_PIXEL = 0.28
FINDINGS = ("normal", "nodule", "effusion", "cardiomegaly")
ZONES = ("upper", "middle", "lower")
ZONE_T = {"upper": (0.18, 0.35), "middle": (0.42, 0.58), "lower": (0.62, 0.74)}  # fraction of lung height


@dataclass
class Case:
    finding: str
    side: str = ""        # "right" / "left" (the patient's)
    zone: str = ""        # nodule zone
    size_cm: float = 0.0  # nodule diameter
    extent: str = ""      # effusion: "small" / "moderate"
    ctr: float = 0.0      # cardiothoracic ratio

    @property
    def location(self) -> str:
        if self.finding == "nodule":
            return f"{self.side} {self.zone} zone"
        return f"{self.side} costophrenic angle" if self.finding == "effusion" else ""


def draw(finding: str, rng: np.random.Generator) -> tuple[np.ndarray, Case]:
    """A uint8 SIZE x SIZE image and the facts its report states."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    s = rng.uniform(0.92, 1.04)
    cx = 0.5 + rng.normal(0, 0.012)
    case = Case(finding=finding)

    img = np.where(((x - cx) / (0.45 * s)) ** 2 + ((y - 0.62) / 0.62) ** 2 < 1, 0.42, 0.03)
    img = np.where((np.abs(x - cx) < 0.08) & (y < 0.2), 0.42, img)  # neck

    lungs, fluid = np.zeros_like(img, bool), np.zeros_like(img, bool)
    top, base = 0.16, 0.84 + rng.uniform(-0.02, 0.02)
    a = 0.15 * s
    lateral_edge = {}
    for side, sign in (("right", -1), ("left", 1)):
        xc = cx + sign * 0.19 * s
        t = np.clip((y - top) / (base - top), 0, 1)
        half = a * (0.35 + 0.65 * np.sqrt(t))
        u = (x - xc) / a
        side_base = base - (0.025 if side == "right" else 0.0)
        dome = side_base - 0.07 * np.clip(1 - u ** 2, 0, 1)
        lung = (np.abs(x - xc) < half) & (y > top) & (y < dome)
        lungs |= lung
        lateral_edge[side] = (xc, sign, side_base)
    case.ctr = rng.uniform(0.58, 0.68) if finding == "cardiomegaly" else rng.uniform(0.40, 0.48)

    texture = ndimage.gaussian_filter(rng.normal(0, 1, img.shape), 2.0)
    img = np.where(lungs, 0.14 + 0.03 * texture, img)
    for k in range(9):  # posterior ribs, faint arcs
        ry = 0.2 + 0.075 * k + 0.09 * ((x - cx) / 0.35) ** 2
        img = img + np.where(lungs & (np.abs(y - ry) < 0.011), 0.06, 0.0)
    clavicle = 0.17 - 0.15 * (np.abs(x - cx) - 0.05)
    img = np.where((np.abs(y - clavicle) < 0.012) & (np.abs(x - cx) > 0.05) & (np.abs(x - cx) < 0.33), 0.62, img)
    img = np.where((np.abs(x - cx) < 0.06) & (y > 0.12) & (y < 0.9), 0.58, img)  # mediastinum and spine

    thorax = 2 * (0.19 * s + a)
    hw = case.ctr * thorax / 2
    hx, hy = cx + 0.3 * hw, 0.70
    heart = ((x - hx) / hw) ** 2 + ((y - hy) / 0.12) ** 2 < 1
    img = np.where(heart, 0.6, img)

    if finding == "nodule":
        case.side, case.zone = rng.choice(["right", "left"]), rng.choice(ZONES)
        xc, sign, _ = lateral_edge[case.side]
        t0 = rng.uniform(*ZONE_T[case.zone])
        ny = top + t0 * (base - top)
        nx = xc + sign * rng.uniform(0.1, 0.5) * a * (0.35 + 0.65 * np.sqrt(t0))
        r = rng.uniform(3.0, 6.0) / SIZE
        case.size_cm = round(2 * r * SIZE * CM_PER_PIXEL, 1)
        d = np.hypot(x - nx, y - ny)
        img = img + 0.38 / (1 + np.exp((d - r) * SIZE / 0.7))
    elif finding == "effusion":
        case.side, case.extent = rng.choice(["right", "left"]), rng.choice(["small", "moderate"])
        xc, sign, side_base = lateral_edge[case.side]
        h = 0.12 if case.extent == "small" else 0.2
        v = np.clip(sign * (xc + sign * a - x) / (2 * a), 0, 1)  # 0 at the lateral wall, 1 medially
        meniscus = side_base - h * (1 - 0.6 * v)
        fluid = lungs & (np.sign(x - cx) == sign) & (y > meniscus)
        img = np.where(fluid, 0.44, img)

    img = ndimage.gaussian_filter(img, 0.9)
    img = np.clip(img * rng.uniform(0.9, 1.1) + rng.normal(0, 0.015, img.shape), 0, 1) ** rng.uniform(0.85, 1.15)
    return (img * 255).round().astype(np.uint8), case


_HEART = ["The heart size is normal.", "The cardiomediastinal silhouette is within normal limits.",
          "Normal heart size and mediastinal contours."]
_LUNGS = ["The lungs are clear.", "No focal consolidation.", "The lungs are clear without focal opacity."]
_PLEURA = ["No pleural effusion or pneumothorax.", "No pleural effusion. No pneumothorax.",
           "The costophrenic angles are sharp. No pneumothorax."]
_NORMAL = ["No acute cardiopulmonary abnormality.", "Normal chest radiograph.", "No active disease."]


def report(case: Case, rng: np.random.Generator) -> str:
    """'FINDINGS: ... IMPRESSION: ...' stating exactly what ``draw`` planted."""
    heart, lungs, pleura = rng.choice(_HEART), rng.choice(_LUNGS), rng.choice(_PLEURA)
    impression = rng.choice(_NORMAL)
    if case.finding == "nodule":
        lungs = f"There is a {case.size_cm:.1f} cm rounded opacity in the {case.side} {case.zone} zone."
        impression = (f"{case.side.capitalize()} {case.zone} zone nodule measuring {case.size_cm:.1f} cm. "
                      "CT chest recommended for further evaluation.")
    elif case.finding == "effusion":
        pleura = (f"Blunting of the {case.side} costophrenic angle with a meniscus, consistent with a "
                  f"{case.extent} {case.side} pleural effusion. No pneumothorax.")
        impression = f"{case.extent.capitalize()} {case.side} pleural effusion."
    elif case.finding == "cardiomegaly":
        heart = f"The cardiac silhouette is enlarged, with a cardiothoracic ratio of about {case.ctr:.2f}."
        impression = rng.choice(["Cardiomegaly.", "Enlarged cardiac silhouette without pulmonary edema."])
    return f"FINDINGS: {heart} {lungs} {pleura} IMPRESSION: {impression}"
