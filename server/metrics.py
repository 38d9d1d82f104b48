"""A few counters and gauges in the Prometheus text format. Labels never carry room ids,
emails, names or addresses: only fixed words."""

from __future__ import annotations

import time
from collections.abc import Callable


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.help: dict[str, tuple[str, str]] = {}
        self.gauges: dict[str, Callable[[], float]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self.help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def gauge(self, name: str, text: str, read: Callable[[], float]) -> None:
        self.describe(name, "gauge", text)
        self.gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        done: set[str] = set()

        def head(name: str) -> None:
            if name in done:
                return
            done.add(name)
            kind, text = self.help.get(name, ("counter", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        head("ruang_start_time_seconds")
        lines.append(f"ruang_start_time_seconds {self.started:.3f}")
        for (name, labels), value in sorted(self.counters.items()):
            head(name)
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
        for name, read in sorted(self.gauges.items()):
            head(name)
            lines.append(f"{name} {read():g}")
        return "\n".join(lines) + "\n"


def new_metrics() -> Metrics:
    m = Metrics()
    m.describe("ruang_start_time_seconds", "gauge", "Unix time the server started")
    m.describe("ruang_logins_total", "counter", "Login attempts by result")
    m.describe("ruang_rooms_created_total", "counter", "Rooms created")
    m.describe("ruang_http_requests_total", "counter", "HTTP requests by status class")
    return m
