"""`ctl status` figures stay the same size however long the daemon runs."""

import json

from pivoice.metrics import Latency, Metrics


def test_status_figures_do_not_grow_with_conversations():
    metrics = Metrics()
    sizes = []
    for n in range(1, 2001):
        metrics.press_to_first_append.add(30.0 + n % 7)
        metrics.delta_to_speaker.add(1.0)
        metrics.delta_to_device.add(2.0)
        metrics.conversations += 1
        if n in (1000, 2000):
            sizes.append(len(json.dumps(metrics.as_dict())))
    assert sizes[0] == sizes[1]   # (the same number of digits in the counters)
    figures = metrics.as_dict()["press_to_first_append_ms"]
    assert figures["count"] == 2000 and len(figures["recent_ms"]) == 10


def test_summary_figures():
    latency = Latency(window=100)
    assert latency.as_dict()["median_ms"] is None and latency.as_dict()["count"] == 0
    for value in range(1, 101):
        latency.add(float(value))
    latency.add(1000.0)   # pushes 1 out of the window
    d = latency.as_dict()
    assert (d["count"], d["max_ms"], d["median_ms"], d["p95_ms"]) == (101, 1000.0, 51.5, 96.0)
    assert d["recent_ms"][-1] == 1000.0
