"""`python -m captioner.batch ...`, and `torchrun --nproc-per-node N -m captioner.batch ...`."""

import sys

from captioner.cli.batch.command import main

sys.exit(main())
