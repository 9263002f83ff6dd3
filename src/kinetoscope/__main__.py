"""``python -m kinetoscope`` (and ``torchrun -m kinetoscope``) runs the CLI."""

from kinetoscope.cli import main

raise SystemExit(main())
