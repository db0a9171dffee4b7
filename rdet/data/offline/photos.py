"""scikit-image's bundled photographs (shipped inside the scikit-image package), RGB uint8."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

# Colour or greyscale photos that skimage ships in its wheel (no pooch download needed).
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera")


def photos(names: Sequence[str] = PHOTO_NAMES) -> Dict[str, np.ndarray]:
    """``{name: (H, W, 3) uint8 RGB}``; greyscale photos are repeated over 3 channels."""
    from skimage import data

    out = {}
    for name in names:
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out[name] = img[..., :3].astype(np.uint8)
    return out
