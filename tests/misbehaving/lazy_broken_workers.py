"""The worker module of ``misbehaving.lazy_broken``: its import fails."""

import os

SETTING = os.environ["BROKEN_WORKER_SETTING"]
