"""Today's weather where a patient lives, for the check-in's prompt, and a place name
resolved once to coordinates.

Open-Meteo by default (no key), OpenWeather when OPENWEATHER_API_KEY is set. Only
coordinates rounded to 0.1 degree (about 10 km) leave, never a name or an id; one call
per rounded place per hour (cached in Redis, shared by every worker); WEATHER_TIMEOUT_SECONDS
(3 s). Any failure means a prompt without weather, not a failed check-in.
"""

import contextlib
import json
import logging
from dataclasses import dataclass
from decimal import Decimal

import httpx
from django.conf import settings
from redis.exceptions import RedisError

from channels_app.shared_state import redis_client

logger = logging.getLogger(__name__)

CACHE_SECONDS = 3600

# WMO weather interpretation codes, as Open-Meteo reports them.
_WMO = [
    ((0,), "clear sky"),
    ((1,), "mainly clear"),
    ((2,), "partly cloudy"),
    ((3,), "overcast"),
    ((45, 48), "fog"),
    ((51, 53, 55, 56, 57), "drizzle"),
    ((61, 63, 65, 66, 67), "rain"),
    ((71, 73, 75, 77), "snow"),
    ((80, 81, 82), "rain showers"),
    ((85, 86), "snow showers"),
    ((95, 96, 99), "thunderstorm"),
]


@dataclass(frozen=True)
class Weather:
    summary: str  # e.g. "light rain"
    temperature_c: float

    def describe(self) -> str:
        return f"{self.summary}, {round(self.temperature_c)} °C"


def rounded(value: Decimal | float) -> float:
    return round(float(value), 1)


def current_weather(latitude: Decimal | float, longitude: Decimal | float) -> Weather | None:
    place = (rounded(latitude), rounded(longitude))
    key = f"weather:{place[0]}:{place[1]}"
    try:
        cached = redis_client().get(key)
    except RedisError:
        cached = None
    if cached:
        data = json.loads(cached)
        return Weather(data["summary"], data["temperature_c"])
    try:
        weather = _openweather(*place) if settings.OPENWEATHER_API_KEY else _open_meteo(*place)
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        logger.warning("weather unavailable (%s); the check-in goes without it", type(exc).__name__)
        return None
    with contextlib.suppress(RedisError):
        redis_client().set(key, json.dumps(weather.__dict__), ex=CACHE_SECONDS)
    return weather


def _get(url: str, params: dict) -> dict:
    response = httpx.get(url, params=params, timeout=settings.WEATHER_TIMEOUT_SECONDS)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _open_meteo(latitude: float, longitude: float) -> Weather:
    data = _get(
        f"{settings.OPEN_METEO_BASE_URL}/v1/forecast",
        {"latitude": latitude, "longitude": longitude, "current": "temperature_2m,weather_code"},
    )
    current = data["current"]
    code = int(current["weather_code"])
    summary = next((name for codes, name in _WMO if code in codes), "mixed weather")
    return Weather(summary, float(current["temperature_2m"]))


def _openweather(latitude: float, longitude: float) -> Weather:
    data = _get(
        f"{settings.OPENWEATHER_BASE_URL}/data/2.5/weather",
        {
            "lat": latitude,
            "lon": longitude,
            "units": "metric",
            "appid": settings.OPENWEATHER_API_KEY,
        },
    )
    return Weather(str(data["weather"][0]["description"])[:60], float(data["main"]["temp"]))


def geocode(place_name: str) -> tuple[float, float] | None:
    """A place name's coordinates, rounded as above; None when it is not found or the
    service does not answer."""
    try:
        data = _get(
            f"{settings.GEOCODING_BASE_URL}/v1/search",
            {"name": place_name, "count": 1, "format": "json"},
        )
        first = data["results"][0]
        return rounded(first["latitude"]), rounded(first["longitude"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        return None
