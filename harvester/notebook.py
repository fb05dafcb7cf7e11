"""A small Python API for reading a store from a notebook: `harvester.open_store(path)`."""
