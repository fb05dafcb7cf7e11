"""The tests of `harvester serve` and its Datasette plugin (a package, so its conftest
has a name of its own)."""
