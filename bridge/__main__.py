"""``python -m bridge`` is the ``fin2mqtt`` command."""

from bridge.cli import main

raise SystemExit(main())
