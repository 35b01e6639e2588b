"""The outside of labwitness: settings, CLI, REST API and wiring.

Owns the one typed settings object (:mod:`api.settings`), the wiring that
builds storage, index and recorder from it (:mod:`api.runtime`), the FastAPI
app factory (:mod:`api.app`), problem+json error mapping
(:mod:`api.problems`) and the ``labwitness`` command (:mod:`api.cli`).

Depends on every other package; nothing imports ``api``.
"""
