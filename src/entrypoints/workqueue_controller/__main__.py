"""``python -m workqueue_controller``: the same as ``workqueue controller``."""

import sys

from workqueue_cli.main import main

raise SystemExit(main(["controller", *sys.argv[1:]]))
