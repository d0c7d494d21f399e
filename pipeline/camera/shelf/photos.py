"""The real photographs a shelf scene is made over, all shipped inside packages (no
download): scikit-learn's ``load_sample_images`` (a temple in China, a flower) and
scikit-image's ``data`` (coffee, a cat, and the astronaut, whose face is in view).

The backdrop behind the shelves and the packs on them are cut from the photographs
without people; the astronaut hangs as a poster, and ``FACE_BOX`` says where her face
is in that photograph so that the ground truth can say where it is in a frame.
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["FACE_BOX", "face_photo", "product_photos"]

# The astronaut's face in skimage.data.astronaut() (512 x 512): x0, y0, x1, y1. OpenCV's
# frontal-face Haar cascade finds it at (177, 66, 95, 95).
FACE_BOX = (177, 66, 272, 161)


@cache
def product_photos() -> tuple[np.ndarray, ...]:
    """RGB photographs without faces (read-only arrays)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [*load_sample_images().images]
    photos += [data.coffee(), data.chelsea()]  # type: ignore[no-untyped-call]
    out = []
    for photo in photos:
        array = np.ascontiguousarray(photo[..., :3], dtype=np.uint8)
        array.flags.writeable = False
        out.append(array)
    return tuple(out)


@cache
def face_photo() -> np.ndarray:
    """The astronaut (RGB, 512 x 512, read-only); her face is at ``FACE_BOX``."""
    from skimage import data

    astronaut = data.astronaut()  # type: ignore[no-untyped-call]
    array = np.ascontiguousarray(astronaut[..., :3], dtype=np.uint8)
    array.flags.writeable = False
    return array
