"""`python -m mdpipe` is the same as the `mdpipe` console script."""

import sys

from mdpipe.cli import main

sys.exit(main())
