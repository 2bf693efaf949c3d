"""Prometheus exposition: the daemon's live registry plus what the index and the disk can tell.

A registry that already reports the index and the disk (the daemon's) is rendered alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from srs.service.recordings import RecordingService
from srs.storage.diskspace import disk_space


class StoreCollector(Collector):
    def __init__(self, service: RecordingService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("srs_recordings", "Recordings in the index by state", labels=["state"])
        for state, count in sorted(self.service.index.count_by_state().items()):
            by_state.add_metric([state], count)
        yield by_state
        usage = disk_space(self.service.layout.data_dir)
        if usage is None:
            return
        free = GaugeMetricFamily("srs_disk_free_bytes", "Free bytes on the data directory's file system")
        free.add_metric([], usage.free)
        yield free
        total = GaugeMetricFamily("srs_disk_total_bytes", "Size of the data directory's file system")
        total.add_metric([], usage.total)
        yield total


class MetricsExporter:
    """Renders the caller's registry (live daemon metrics) followed by the store metrics."""

    def __init__(
        self, service: RecordingService, registry: CollectorRegistry | None, *, include_store: bool = True
    ) -> None:
        self.registry = registry
        self.service = service
        self.own = CollectorRegistry(auto_describe=False)
        if include_store:
            self.own.register(StoreCollector(service))

    def render(self, node: str | None = None) -> bytes:
        """With ``node``, also that node's recordings by state (``srs_node_recordings``)."""
        parts = [generate_latest(self.own)]
        if self.registry is not None:
            parts.insert(0, generate_latest(self.registry))
        if node is not None:
            extra = CollectorRegistry(auto_describe=False)
            extra.register(_NodeCollector(self.service, node))
            parts.append(generate_latest(extra))
        return b"".join(parts)


class _NodeCollector(Collector):
    def __init__(self, service: RecordingService, node: str) -> None:
        self.service = service
        self.node = node

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "srs_node_recordings", "Recordings one node of the fleet made, by state", labels=["node", "state"]
        )
        for state, count in sorted(self.service.index.count_by_state(node=self.node).items()):
            family.add_metric([self.node, state], count)
        yield family
