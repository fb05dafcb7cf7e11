"""The store in Datasette (`harvester serve`, extra `[web]`): read-only, with metadata
that describes every table and column, the README's example queries as canned queries,
and answers shown decompressed as JSON."""
