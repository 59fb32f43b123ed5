"""The expiry rules a policy calls (``compute_expiry``), in one public place.

A policy, built-in or a plugin's, starts with :func:`immediate_expiry`
(deletions, ``to_ids`` off, the decay vote: ``docs/expiry.md`` "Rules
applied first") and then applies its own rule, usually
:func:`duration_expiry` with its own validity::

    from misp_ti.expiry import duration_expiry, immediate_expiry

    @misp_ti.hookimpl
    def compute_expiry(stream, record, doc, ctx):
        if ctx.policy != "mine":
            return None
        decided = immediate_expiry(record, doc, ctx)
        if decided is not None:
            return decided
        return duration_expiry(record, doc, ctx, valid_for=timedelta(days=3), reason="mine")

The ``decay-model`` prediction lives in :mod:`misp_ti.expiry.decay_model`.
"""

from misp_ti.expiry.rules import (
    VOTE_BACKDATE,
    attribute_field,
    decay_vote,
    duration_expiry,
    duration_policy,
    flag,
    immediate_expiry,
    ingest_expiry,
    reference_time,
    refetch_grace,
    validity,
    vote_expiry,
)

__all__ = [
    "VOTE_BACKDATE",
    "attribute_field",
    "decay_vote",
    "duration_expiry",
    "duration_policy",
    "flag",
    "immediate_expiry",
    "ingest_expiry",
    "reference_time",
    "refetch_grace",
    "validity",
    "vote_expiry",
]
