"""``python -m bench``: every benchmark and one report (see bench/run.py)."""

from bench.run import main

raise SystemExit(main())
