"""``python -m proxy`` is the ``teredo-proxy`` console script."""

import sys

from proxy.cli import main

sys.exit(main())
