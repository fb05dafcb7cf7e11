"""What the CLI's verbs do, one module a verb (or a few small ones)."""
