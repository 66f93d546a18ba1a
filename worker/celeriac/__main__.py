"""``python -m celeriac`` runs the ``celeriac`` command line."""

import sys

from celeriac.cli import main

sys.exit(main())
