"""``python -m analysis STORE -o DIR``: the report without the sweep package (no torch, no Ray)."""
import sys

from .cli import main

sys.exit(main())
