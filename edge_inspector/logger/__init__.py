"""``edge-inspector log``: every event of a daemon into a file, exactly once, in seq order."""
