"""``python -m dali_relabel.cli``: the ``dali-relabel`` command."""

import sys

from . import main

sys.exit(main())
