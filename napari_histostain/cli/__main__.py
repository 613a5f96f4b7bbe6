"""`python -m napari_histostain.cli`: the `histostain` command."""

import sys

from . import main

sys.exit(main())
