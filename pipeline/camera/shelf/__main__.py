"""``python -m pipeline.camera.shelf OUT.mp4 [--seconds S] [--size WxH] [--seed N]``."""

import sys

from pipeline.camera.shelf.cli import main

sys.exit(main())
