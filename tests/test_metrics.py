"""The metrics registry: listingbot's own series and the process it runs in."""

from __future__ import annotations

import tempfile
import time

from listingbot.metrics import Metrics


def test_registry_exports_memory_cpu_and_start_time_of_the_process() -> None:
    """process_resident_memory_bytes, process_cpu_seconds_total and
    process_start_time_seconds describe this process."""
    registry = Metrics().registry
    rss = registry.get_sample_value("process_resident_memory_bytes") or 0
    cpu = registry.get_sample_value("process_cpu_seconds_total") or 0
    started = registry.get_sample_value("process_start_time_seconds") or 0
    assert rss > 1_000_000  # a Python process is megabytes, not bytes
    assert cpu > 0
    assert 0 < started <= time.time()


def test_registry_open_fds_follow_the_files_this_process_opens() -> None:
    """process_open_fds counts this process's descriptors: opening files raises it."""
    registry = Metrics().registry
    before = registry.get_sample_value("process_open_fds") or 0
    files = [tempfile.TemporaryFile() for _ in range(8)]  # noqa: SIM115 - closed below
    try:
        during = registry.get_sample_value("process_open_fds") or 0
    finally:
        for file in files:
            file.close()
    after = registry.get_sample_value("process_open_fds") or 0
    assert before > 0
    assert during >= before + 8
    assert after <= during - 8
    assert (registry.get_sample_value("process_max_fds") or 0) >= during


def test_rendered_metrics_include_the_process_series() -> None:
    """The /metrics text has the process_* series next to listingbot's own."""
    text = Metrics().render().decode()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert f"\n{name} " in text, name
    assert "listingbot_build_info" in text
