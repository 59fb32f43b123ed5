"""Talking to MISP: the REST client, paging, record access, decay models."""
