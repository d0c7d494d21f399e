"""Shelf scenes with ground truth: generated video of shelves of price labels, for
reading prices (PP-OCR, models/ppocr) off a camera.

One module per idea:

* ``labels``: what a label says (product, ``$3.49``, ``$0.03/oz``) and drawing it;
* ``photos``: the real photographs the scene is made over (one with a face);
* ``layout``: the shelves and label slots, the backdrop, and the camera's motion;
* ``story``: labels put up and taken away, prices changing;
* ``degrade``: blur, glare, low light, occlusion, JPEG;
* ``scene``: the frames and their ground truth;
* ``writer``: the H.264 video and the JSON Lines beside it; ``cli``: the command.

``write_shelf_video("shelf.mp4", seconds=10, seed=0)`` writes ``shelf.mp4`` and
``shelf.jsonl``; docs/cameras.md ("Shelf scenes") has the ground truth's format.
"""

from pipeline.camera.shelf.scene import ShelfConfig, ShelfFrame, ShelfScene
from pipeline.camera.shelf.writer import (
    ShelfVideo,
    ground_truth_path,
    read_ground_truth,
    write_scene,
    write_shelf_video,
)

__all__ = [
    "ShelfConfig",
    "ShelfFrame",
    "ShelfScene",
    "ShelfVideo",
    "ground_truth_path",
    "read_ground_truth",
    "write_scene",
    "write_shelf_video",
]
