#!/usr/bin/env python3
"""``python cli.py ...`` is the same program as the ``graphprof`` console script."""

import sys

from graphprof.cli import main

if __name__ == "__main__":
    sys.exit(main())
