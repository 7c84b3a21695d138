"""The request metrics, as a Prometheus server parses them from /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tram.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples}


def test_requests_latency_buckets_and_tokens() -> None:
    metrics = Metrics()
    metrics.observe_request("m", 200, 0.003, 0.001, 7, 2)
    metrics.observe_request("m", 200, 1.0, None, 7, 2)  # on a bound: counted in that bucket
    metrics.observe_request("m", 400, 0.3, None, None, None)
    metrics.observe_request("other", 200, 400.0, 400.0, 1, 0)  # past the last bound
    found = _samples(metrics)

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert value("tram_requests_total", model="m", route="chat", status="200") == 2
    assert value("tram_requests_total", model="m", route="chat", status="400") == 1
    assert value("tram_request_duration_seconds_bucket", model="m", route="chat", le="0.005") == 1
    assert value("tram_request_duration_seconds_bucket", model="m", route="chat", le="0.25") == 1
    assert value("tram_request_duration_seconds_bucket", model="m", route="chat", le="0.5") == 2
    assert value("tram_request_duration_seconds_bucket", model="m", route="chat", le="1.0") == 3
    assert value("tram_request_duration_seconds_bucket", model="m", route="chat", le="+Inf") == 3
    assert value("tram_request_duration_seconds_count", model="m", route="chat") == 3
    assert abs(value("tram_request_duration_seconds_sum", model="m", route="chat") - 1.303) < 1e-9
    assert value("tram_time_to_first_byte_seconds_count", model="m") == 1
    assert value("tram_request_duration_seconds_bucket", model="other", route="chat", le="300.0") == 0
    assert value("tram_request_duration_seconds_bucket", model="other", route="chat", le="+Inf") == 1
    assert value("tram_tokens_total", model="m", direction="prompt") == 14
    assert value("tram_tokens_total", model="m", direction="completion") == 4
