"""The index: what footage exists, where, and what is missing.

Owns the SQLModel tables (:mod:`index.models`), engine construction for
SQLite (embedded default, one writer) and PostgreSQL (:mod:`index.db`), the
Alembic migrations (``index/migrations``, :mod:`index.migrate`) and the
queries the API and the recorder use (:mod:`index.queries`).

Knows nothing of storage or the recorder.  Instants are stored as integer
milliseconds since the Unix epoch, UTC (``*_ms`` columns): unambiguous on both
databases and cheap to range-scan at tens of millions of rows.
"""
