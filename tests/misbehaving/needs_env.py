"""A plugin that reads a missing environment variable when imported."""

import os

API_KEY = os.environ["BROKEN_API_KEY"]
