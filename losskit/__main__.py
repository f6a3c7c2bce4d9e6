"""``python -m losskit evaluate ...``: the same as the ``losskit`` console script."""

import sys

from .cli import main

sys.exit(main())
