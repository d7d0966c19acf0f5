"""Prometheus metrics of the venue emulator, read from the running :class:`~venue_sim.app.VenueSim` on scrape.

Nothing is counted twice: the generator and connections keep plain integers, this collector turns
them into metric families when ``/metrics`` is scraped (from the exporter thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from venue_sim.app import VenueSim

__all__ = ["METRIC_NAMES", "SimCollector", "register"]

METRIC_NAMES: tuple[str, ...] = (
    "mdpipe_sim_events_generated",
    "mdpipe_sim_identical_deltas",
    "mdpipe_sim_markets",
    "mdpipe_sim_connections",
    "mdpipe_sim_frames_sent",
    "mdpipe_sim_bytes_sent",
    "mdpipe_sim_suppressed_messages",
    "mdpipe_sim_rate_events_per_second",
    "mdpipe_sim_behaviour_events",
    "mdpipe_sim_record_records",
)


class SimCollector(Collector):
    def __init__(self, sim: VenueSim) -> None:
        self.sim = sim

    def collect(self) -> Iterator[Metric]:
        sim = self.sim
        gen = sim.generator
        conns = list(sim.server.connections.values())
        yield CounterMetricFamily("mdpipe_sim_events_generated", "Venue events generated", value=gen.next_id - 1)
        yield CounterMetricFamily("mdpipe_sim_identical_deltas", "Deltas identical to the previous one", gen.identical)
        yield GaugeMetricFamily("mdpipe_sim_markets", "Markets listed (all statuses)", value=len(sim.markets))
        yield GaugeMetricFamily("mdpipe_sim_connections", "Open WebSocket connections", value=len(conns))
        frames = CounterMetricFamily("mdpipe_sim_frames_sent", "Frames sent per connection", labels=["conn"])
        sent = CounterMetricFamily("mdpipe_sim_bytes_sent", "Bytes written per connection", labels=["conn"])
        supp = CounterMetricFamily("mdpipe_sim_suppressed_messages", "Data messages dropped by faults", labels=["conn"])
        for sc in conns:
            frames.add_metric([str(sc.conn_id)], sc.frames_sent)
            sent.add_metric([str(sc.conn_id)], sc.bytes_sent)
            supp.add_metric([str(sc.conn_id)], sc.session.suppressed)
        yield frames
        yield sent
        yield supp
        yield GaugeMetricFamily("mdpipe_sim_rate_events_per_second", "Configured event rate", value=gen.rate)
        behaviours = CounterMetricFamily(
            "mdpipe_sim_behaviour_events",
            "Real-venue behaviours and venue-level faults produced (pauses, created markets, bad numbers, ...)",
            labels=["kind"],
        )
        for kind, count in {**gen.counts, "redelivered": sim.server.redelivered()}.items():
            behaviours.add_metric([kind], count)
        yield behaviours
        records = sim.record.count if sim.record is not None else 0
        yield CounterMetricFamily("mdpipe_sim_record_records", "Records written to the venue's record", value=records)


def register(sim: VenueSim) -> SimCollector:
    collector = SimCollector(sim)
    REGISTRY.register(collector)
    return collector
