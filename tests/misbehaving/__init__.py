"""Plugin modules that misbehave, for the tests (loaded with ``-p misbehaving.NAME``)."""
