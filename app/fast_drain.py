"""Faust's message drain with a direct-delivery fast path.

Faust hands every fetched record to its streams through ``Consumer._drain_messages``, which
wraps each hand-over in ``Service.wait_first(callback(message), suspend_flow.wait())``: four
tasks scheduled, one awaited, three cancelled, so that a rebalance can interrupt a hand-over
blocked on a full stream queue. Besides its ~50 µs, each hand-over then costs the drain two or
three passes of the event loop, and in every pass the agents run an event of their own. Under
load the drain so fell behind the fetcher: records reached the routing agent 50-190 ms after
the bridge produced them, while a plain consumer of the same topic saw them in 15-35 ms.

The hand-over can only block on flow control (a rebalance), on the producer buffer or on a
full queue. When none of them holds, ``callback(message)`` completes without suspending, so
it is awaited directly; otherwise the upstream path runs unchanged. The function below is
``faust.transport.consumer.Consumer._drain_messages`` of faust-streaming 0.15.3 with that one
change; ``tests/unit/test_fast_drain.py`` hashes the upstream source, so an upgrade of Faust
fails until this copy is reviewed against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from faust.transport import consumer as faust_consumer
from faust.types import TP
from mode import Service

#: sha256 of ``inspect.getsource(faust.transport.consumer.Consumer._drain_messages)`` this
#: module was copied from (faust-streaming 0.15.3).
UPSTREAM_SOURCE_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def can_deliver_now(consumer: Any, tp: TP) -> bool:
    """True when handing a record of ``tp`` to its streams cannot suspend.

    Mirrors the three waits of Faust's conductor handler: flow control (suspended while
    rebalancing), the producer buffer past its limit, and a full queue of any channel
    subscribed to the partition.
    """
    app = consumer.app
    if consumer.suspend_flow.is_set() or not app.flow_control.is_active():
        return False
    buffer = app.producer.buffer
    if buffer.size > buffer.max_messages:
        return False
    channels = app.topics._tp_index.get(tp)
    if channels is None:
        return True  # no subscriber: the handler ignores the record
    return not any(channel.queue.full() for channel in channels)


class FastDrainMixin:
    """Mix into a Faust ``Consumer`` class, before it, to replace its drain loop."""

    async def _drain_messages(self, fetcher: Any) -> None:
        this = cast(Any, self)
        callback = this.callback
        getmany = this.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = this._read_offset.__getitem__
        set_read_offset = this._read_offset.__setitem__
        flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
        set_flag = this.diag.set_flag
        unset_flag = this.diag.unset_flag
        commit_every = this._commit_every
        acks_enabled_for = this.app.topics.acks_enabled_for
        deliverable: Callable[[Any, TP], bool] = can_deliver_now

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await this.sleep(0)
                if not this.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await this._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and this._n_acked >= commit_every:
                                this._n_acked = 0
                                await this.commit()
                            if deliverable(this, tp):
                                # Nothing in the hand-over can wait: no task, no loop pass.
                                await callback(message)
                            else:
                                await this.wait_first(callback(message), this.suspend_flow.wait())
                            set_read_offset(tp, offset)
                        else:
                            this.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except this.consumer_stopped_errors:
            if this.transport.app.should_stop:
                # we're already stopping so ignore
                this.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if this.transport.app.should_stop:
                # we're already stopping so ignore
                this.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            this.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)
