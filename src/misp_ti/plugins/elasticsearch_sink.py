"""Placeholder: being built (see the issue tracker); registers no hooks yet."""
