"""Shared leaf of the labwitness distribution.

Owns only what every other package needs and nothing may own twice: the one
exception hierarchy (:mod:`labwitness.errors`) and the clock
(:mod:`labwitness.clock`).  It imports nothing from the other packages, so any
of them may import it without creating a cycle.
"""
