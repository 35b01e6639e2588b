"""Retention: how long footage must be kept, and (later) the jobs that act on it.

Owns the policy arithmetic (:mod:`retention.policy`, pure functions with
table-driven tests).  The recorder never imports this package — recording does
not depend on deletion code; ``api`` passes :func:`retention.policy.RetentionPolicy`
into the uploader as a plain callable.
"""
