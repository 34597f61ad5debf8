"""``python -m probecore`` runs the command-line interface."""

from probecore.cli import main

raise SystemExit(main())
