"""``python -m baseline ...`` (and ``torchrun --nproc_per_node=N -m baseline ...``)."""
import sys

from baseline.cli import main

sys.exit(main())
