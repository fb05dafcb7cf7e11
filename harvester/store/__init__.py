"""The store: the only SQL in the harvester."""
