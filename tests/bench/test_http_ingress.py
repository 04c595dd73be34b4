"""The HTTP ingress measurement runs the node's real app in a child process on 127.0.0.1."""

from __future__ import annotations

import math

import pytest

from bench.http_ingress import compute_ingress_cost


def test_ingress_cost_is_measured_against_the_served_app() -> None:
    cost = compute_ingress_cost(requests=40, txs_per_request=2)
    assert set(cost) == {"server_us_per_request", "app_us_per_request", "client_us_per_request"}
    assert all(math.isfinite(v) and v >= 0 for v in cost.values())
    assert cost["app_us_per_request"] > 0  # the app really answered every request


def test_ingress_cost_refuses_an_empty_run() -> None:
    with pytest.raises(ValueError):
        compute_ingress_cost(requests=0, txs_per_request=1)
