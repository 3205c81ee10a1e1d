"""`python -m training.scenes`: the same as `captioner-scenes`."""

import sys

from training.scenes.command import main

sys.exit(main())
