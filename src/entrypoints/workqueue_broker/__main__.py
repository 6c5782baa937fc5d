"""``python -m workqueue_broker``: the same as ``workqueue broker``."""

import sys

from workqueue_cli.main import main

raise SystemExit(main(["broker", *sys.argv[1:]]))
