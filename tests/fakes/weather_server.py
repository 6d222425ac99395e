"""A fake weather and geocoding server on 127.0.0.1: Open-Meteo's /v1/forecast (current
temperature_2m and weather_code) and /v1/search, and OpenWeather's /data/2.5/weather.
It refuses what the real ones refuse (missing coordinates, a forecast without
`current`, OpenWeather without appid: 401) and can be down (500) or slow. Calls are
recorded with their query, so a test sees what left (rounded coordinates only)."""

import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from tests.fakes.base import BaseReply, FakeServer


@dataclass
class Call:
    path: str
    query: dict
    at: float = field(default_factory=time.monotonic)
    status: int = 0


class FakeWeather(FakeServer):
    def __init__(self) -> None:
        self.down = False
        self.delay = 0.0
        super().__init__()

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                call = Call(url.path, query)
                if fake.down:
                    fake.respond(
                        self,
                        BaseReply(500, {"error": True, "reason": "down"}, delay=fake.delay),
                        call,
                    )
                    return
                fake.respond(self, self._reply(url.path, query), call)

            def _reply(self, path: str, query: dict) -> BaseReply:
                delay = fake.delay
                if path == "/v1/forecast":
                    if "latitude" not in query or "longitude" not in query:
                        return BaseReply(400, {"error": True, "reason": "coordinates"}, delay=delay)
                    if "current" not in query:
                        return BaseReply(200, {"latitude": float(query["latitude"])}, delay=delay)
                    return BaseReply(
                        200,
                        {
                            "latitude": float(query["latitude"]),
                            "longitude": float(query["longitude"]),
                            "current": {
                                "time": "2026-11-30T08:00",
                                "temperature_2m": 11.6,
                                "weather_code": 61,
                            },
                        },
                        delay=delay,
                    )
                if path == "/v1/search":
                    if query.get("name", "").lower() == "nowhere":
                        return BaseReply(200, {"generationtime_ms": 0.1}, delay=delay)
                    return BaseReply(
                        200,
                        {
                            "results": [
                                {
                                    "name": query.get("name"),
                                    "latitude": 52.52437,
                                    "longitude": 13.41053,
                                }
                            ]
                        },
                        delay=delay,
                    )
                if path == "/data/2.5/weather":
                    if not query.get("appid"):
                        return BaseReply(401, {"cod": 401, "message": "Invalid API key"})
                    return BaseReply(
                        200,
                        {"weather": [{"description": "light snow"}], "main": {"temp": -1.2}},
                        delay=delay,
                    )
                return BaseReply(404, {"error": True, "reason": "not found"})

        return Handler
