"""``python -m bridge`` is the ``fin2mqtt`` command."""

from bridge.runtime.cli import main

raise SystemExit(main())
