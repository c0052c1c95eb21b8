"""``python -m evo_rl``: the ``evo-rl`` command."""

import sys

from evo_rl.cli import main

sys.exit(main())
