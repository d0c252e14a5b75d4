"""`python -m tito ...` is the same as `tito ...`."""

from tito.cli import main

raise SystemExit(main())
