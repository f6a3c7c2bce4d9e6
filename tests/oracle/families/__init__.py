"""One module per loss family, each with ``ENTRIES: list[catalog.Entry]``; collected by catalog.py."""
