"""Calls sys.exit when imported (as a plugin that insists on a missing dependency might)."""

import sys

sys.exit("misbehaving.exits needs redis: pip install redis")
