"""`python -m mahavishnu_assets.cli`."""

from __future__ import annotations

import sys

from mahavishnu_assets.cli import main

sys.exit(main())
