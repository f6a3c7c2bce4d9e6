"""``python -m losskit evaluate ...``: the same as the ``losskit`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
