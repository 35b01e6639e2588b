"""Wiring of the witnesses outside the box (:mod:`retention.witness`): the outbox every
runtime has (the sealer enqueues into it), the adapters built from the settings, and
the deliverer thread of a recording runtime.  Kept apart from :mod:`api.runtime` so
that the runtime only names it."""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.engine import Engine

from labwitness.clock import Clock
from retention.policy import RetentionPolicy
from retention.witness import RetryPolicy, WitnessDateSource, WitnessDeliverer, WitnessOutbox
from retention.witness_adapters import Witness, WitnessContext
from retention.witness_config import build_witnesses

from api.evidence import SigningKey
from api.settings import Settings


def witness_outbox(settings: Settings, clock: Clock, policy: RetentionPolicy, engine: Engine
                   ) -> tuple[WitnessOutbox, list[Witness]]:
    """The outbox (always: a document enqueued with no witness configured is kept for the
    first one added) and the configured adapters (their secret files are read here)."""
    key = functools.cache(lambda: SigningKey.load(settings.data_dir))  # created on first use, as for exports
    ctx = WitnessContext(clock=clock, retain_until=policy, sign=lambda data: key().sign(data),
                         sign_key_id=lambda: key().fingerprint)
    witnesses = build_witnesses(settings.witnesses, ctx)
    return WitnessOutbox(engine, {w.name: w.kind for w in witnesses}, clock), witnesses


def witness_time_sources(witnesses: list[Witness]) -> list[WitnessDateSource]:
    """Each witness's clock, one more time witness for the expiry sweep (retention.time_witness)."""
    return [WitnessDateSource(w) for w in witnesses]


@contextmanager
def delivering(outbox: WitnessOutbox, witnesses: list[Witness], clock: Clock,
               settings: Settings) -> Iterator[WitnessDeliverer]:
    """The deliverer on its own thread while the block runs; stopped (and joined) after it."""
    deliverer = WitnessDeliverer(outbox, witnesses, clock, policy=RetryPolicy(cap_s=settings.witness_retry_cap_s))
    thread = threading.Thread(target=deliverer.run, name="witness-deliverer", daemon=True)
    thread.start()
    try:
        yield deliverer
    finally:
        deliverer.stop.set()
        thread.join(timeout=15)

