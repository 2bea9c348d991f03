"""Training losses.

Supervised: smooth-L1 over pixels with valid ground truth, on the final and intermediate outputs.
Self-supervised (no ground truth): the right image warped into the left view by the predicted
disparity must look like the left image (0.85 SSIM + 0.15 L1, Monodepth), except where the left
pixel is occluded in the right view or falls outside it; where it is visible, the left disparity must
agree with the right-view disparity it lands on (left-right consistency); and the disparity should be smooth
except at image edges.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..normalisation import MEAN_RGB, STD_RGB

# Weight of each network output in the supervised loss (final output weighted most).
OUTPUT_WEIGHTS = {"disparity": 1.0, "disparity_coarse": 0.5}


def supervised_loss(outputs: dict[str, torch.Tensor], disparity_gt: torch.Tensor,
                    valid: torch.Tensor) -> torch.Tensor:
    """outputs: the network's dict; disparity_gt (N,1,H,W) px; valid (N,1,H,W) bool.

    Zero for a perfect prediction; grows with the error. Averaged over valid pixels only."""
    count = valid.sum().clamp(min=1)
    total = disparity_gt.new_zeros(())
    for key, weight in OUTPUT_WEIGHTS.items():
        if key not in outputs:
            continue
        error = F.smooth_l1_loss(outputs[key], disparity_gt, reduction="none")
        total = total + weight * (error * valid).sum() / count
    return total


# Self-supervised weights. LR consistency is in pixels; smoothness acts on mean-normalised disparity
# (Monodepth2), so neither depends on the image size much.
SSIM_WEIGHT = 0.85
LR_WEIGHT = 0.01
SMOOTHNESS_WEIGHT = 0.01
# A left pixel counts as occluded when the right view's disparity where it lands exceeds its own by
# more than this: something nearer covers it in the right image.
OCCLUSION_TOLERANCE_PX = 1.0


def unnormalise(images: torch.Tensor) -> torch.Tensor:
    """Normalised network input (inference.base.normalise) -> RGB in [0, 1]."""
    mean = images.new_tensor(MEAN_RGB).view(1, 3, 1, 1)
    std = images.new_tensor(STD_RGB).view(1, 3, 1, 1)
    return images * std + mean


def warp_right_to_left(right: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Sample `right` (N,C,H,W) at x - d for every left pixel: the right view seen from the left.

    disparity: (N,1,H,W) left-view px. Bilinear; samples outside the image repeat the border (mask
    them with `in_view`). grid_sample is fine here: this is training code, never exported."""
    n, _, h, w = right.shape
    xs = torch.arange(w, device=right.device, dtype=right.dtype).view(1, 1, w) - disparity[:, 0].to(right.dtype)
    ys = torch.arange(h, device=right.device, dtype=right.dtype).view(1, h, 1).expand(n, h, w)
    grid = torch.stack([2.0 * xs / max(w - 1, 1) - 1.0, 2.0 * ys / max(h - 1, 1) - 1.0], dim=-1)
    return F.grid_sample(right, grid, mode="bilinear", padding_mode="border", align_corners=True)


def in_view(disparity: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) bool: x - d lands inside the right image."""
    w = disparity.shape[-1]
    xs = torch.arange(w, device=disparity.device, dtype=disparity.dtype).view(1, 1, 1, w)
    return (xs - disparity) >= 0


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM over 3x3 windows (reflection-padded), (N,C,H,W)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2))


def photometric_error(target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) images in [0,1] -> (N,1,H,W): 0.85 (1 - SSIM)/2 + 0.15 L1, zero where identical."""
    dissimilarity = ((1.0 - ssim(target, reconstruction)) / 2.0).clamp(0.0, 1.0)
    l1 = (target - reconstruction).abs()
    return (SSIM_WEIGHT * dissimilarity + (1.0 - SSIM_WEIGHT) * l1).mean(dim=1, keepdim=True)


def smoothness_loss(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware: disparity gradients, normalised by the mean disparity so that shrinking all
    disparities does not pay, weighted down where the image has edges. Zero for constant disparity."""
    d = disparity / (disparity.mean(dim=(2, 3), keepdim=True) + 1e-3)
    grad_dx, grad_dy = (d[..., :, 1:] - d[..., :, :-1]).abs(), (d[..., 1:, :] - d[..., :-1, :]).abs()
    image_dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    image_dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    return (grad_dx * torch.exp(-image_dx)).mean() + (grad_dy * torch.exp(-image_dy)).mean()


def visible_mask(disparity_left: torch.Tensor, disparity_right: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) bool: the left pixel is inside the right image and not occluded there."""
    landed = warp_right_to_left(disparity_right, disparity_left)
    return in_view(disparity_left) & (landed - disparity_left <= OCCLUSION_TOLERANCE_PX)


def right_view_disparity(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The right image's disparity from the same network: mirrored, the right image is a left image
    (its matches lie to its left), so run model(flip(right), flip(left)) and flip the result back."""
    flipped = model(torch.flip(right, dims=[3]), torch.flip(left, dims=[3]))["disparity"]
    return torch.flip(flipped.float(), dims=[3])


def self_supervised_terms(left_rgb: torch.Tensor, right_rgb: torch.Tensor, disparity: torch.Tensor,
                          disparity_right: torch.Tensor, photometric_scales: int = 1) -> dict[str, torch.Tensor]:
    """The three terms for one left-view disparity (N,1,H,W), and the share of pixels the first two cover;
    images in [0,1].

    photometric_scales > 1: the photometric term is the mean over the images at full size and average-
    pooled by 2, 4, ... (disparity pooled and halved with them): pooling averages sensor noise away, which
    otherwise dominates 3x3 SSIM on a noisy camera (there a wrong disparity can match better than the truth)."""
    visible = visible_mask(disparity.detach(), disparity_right.detach()).float()
    photometric = disparity.new_zeros(())
    for level in range(photometric_scales):
        factor = 2 ** level
        left_s, right_s, disparity_s, visible_s = left_rgb, right_rgb, disparity, visible
        if factor > 1:
            left_s, right_s = F.avg_pool2d(left_rgb, factor), F.avg_pool2d(right_rgb, factor)
            disparity_s = F.avg_pool2d(disparity, factor) / factor
            visible_s = -F.max_pool2d(-visible, factor)  # visible only if every pooled pixel is
        error = photometric_error(left_s, warp_right_to_left(right_s, disparity_s))
        photometric = photometric + (error * visible_s).sum() / visible_s.sum().clamp(min=1.0) / photometric_scales
    # Over the visible pixels only: an occluded left pixel lands on the occluder in the right view, so
    # the term would pull it to the occluder's disparity (foreground fattening; measured: adaptation
    # then doubled the error in occluded areas). The mask is computed without gradient, so no step is
    # rewarded for declaring pixels occluded; `visible_fraction` in the label-free report shows it anyway.
    lr = ((disparity - warp_right_to_left(disparity_right, disparity)).abs() * visible).sum() / visible.sum().clamp(min=1.0)
    return {"photometric": photometric, "lr_consistency": lr, "smoothness": smoothness_loss(disparity, left_rgb),
            "visible_fraction": visible.mean()}  # reported (evaluation/label_free.py), never trained on


def self_supervised_loss(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor,
                         outputs: dict[str, torch.Tensor], photometric_scales: int = 1) -> torch.Tensor:
    """left, right: normalised (N,3,H,W); outputs: model(left, right). Returns the weighted sum over
    the final and intermediate outputs (OUTPUT_WEIGHTS).

    The right-view pass runs without gradient: it only supplies the occlusion mask and the
    consistency target, the mirrored pair trains the same weights anyway, and a second
    differentiable forward would break DistributedDataParallel (one forward per backward)."""
    left_rgb, right_rgb = unnormalise(left.float()), unnormalise(right.float())
    with torch.no_grad():
        disparity_right = right_view_disparity(model, left, right)
    total = left.new_zeros((), dtype=torch.float32)
    for key, weight in OUTPUT_WEIGHTS.items():
        if key not in outputs:
            continue
        terms = self_supervised_terms(left_rgb, right_rgb, outputs[key].float(), disparity_right, photometric_scales)
        total = total + weight * (terms["photometric"] + LR_WEIGHT * terms["lr_consistency"]
                                  + SMOOTHNESS_WEIGHT * terms["smoothness"])
    return total
