"""``python -m workqueue_cli``: the ``workqueue`` command."""

from workqueue_cli.main import main

raise SystemExit(main())
