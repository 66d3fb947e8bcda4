"""C{python -m bench}: the same as C{python -m bench.run}."""

import sys

from bench.run import main

sys.exit(main())
