"""The store in Datasette (`harvester serve`, extra `[web]`): read-only, with metadata
that describes every table and column, the README's example queries as canned queries,
full-text search on titles, and answers shown decompressed as JSON.

Its rooms: `metadata` (Datasette's metadata, pure data, no Datasette needed, every
table and column described in `store.descriptions`' words), `search` (the index of
titles, a file of its own), `plugin` (answers decompressed, `harvester_body()`) and
`app` (Datasette over the store, read-only, and the server). Only `plugin` and `app`
import Datasette.
"""
