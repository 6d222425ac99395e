"""The language model, through the official `openai` client and the Chat Completions
API, so any OpenAI-compatible server works unchanged: OpenAI, Azure OpenAI, Ollama,
vLLM, a llama.cpp server. Every failure becomes LlmUnavailable with a short reason
code; the caller then sends its fallback.

At most LLM_MAX_CONCURRENCY requests are open at once across every worker: a slot is a
member of a Redis sorted set, scored by when it lapses, so a worker killed mid-request
gives its slot back by itself.
"""

import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import openai
from django.conf import settings
from redis.exceptions import RedisError

from channels_app.shared_state import redis_client, run_script

logger = logging.getLogger(__name__)


# A request is started only with at least this long left before the deadline.
MIN_SECONDS = 1.0


class LlmUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    model: str
    latency_ms: int
    prompt_tokens: int | None
    completion_tokens: int | None


def llm_configured() -> bool:
    return bool(settings.LLM_BASE_URL)


@lru_cache(maxsize=4)
def _client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # Retries are ours to decide: the fallback is better than a check-in late.
    return openai.OpenAI(
        base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0
    )


def complete(
    messages: list[dict[str, str]], *, deadline: float, max_tokens: int = 200
) -> Completion:
    """One chat completion, given up by `deadline` (time.monotonic())."""
    if not llm_configured():
        raise LlmUnavailable("not_configured")
    if deadline - time.monotonic() < MIN_SECONDS:
        # Too little time left for an answer: a request the client then abandons still
        # costs the model server its work.
        raise LlmUnavailable("too_late")
    client = _client(settings.LLM_BASE_URL, settings.LLM_API_KEY, settings.LLM_TIMEOUT_SECONDS)
    with _slot(deadline - MIN_SECONDS):
        timeout = min(settings.LLM_TIMEOUT_SECONDS, deadline - time.monotonic())
        started = time.monotonic()
        try:
            response = client.with_options(timeout=timeout).chat.completions.create(
                model=settings.LLM_MODEL,
                messages=messages,
                max_tokens=max_tokens,
                temperature=0.7,
            )
        except openai.APITimeoutError as exc:
            raise LlmUnavailable("timeout") from exc
        except openai.RateLimitError as exc:
            raise LlmUnavailable("rate_limited") from exc
        except openai.APIStatusError as exc:
            raise LlmUnavailable(f"http_{exc.status_code}") from exc
        except openai.APIConnectionError as exc:
            raise LlmUnavailable("unreachable") from exc
        except (openai.OpenAIError, ValueError, TypeError, KeyError) as exc:
            raise LlmUnavailable("bad_answer") from exc
        latency_ms = int((time.monotonic() - started) * 1000)
    try:
        choice = response.choices[0]
        text = choice.message.content
        usage = response.usage
    except (AttributeError, IndexError, TypeError) as exc:
        raise LlmUnavailable("bad_answer") from exc
    if not isinstance(text, str):
        raise LlmUnavailable("bad_answer")
    return Completion(
        text=text,
        finish_reason=str(choice.finish_reason or ""),
        model=str(getattr(response, "model", "") or settings.LLM_MODEL)[:100],
        latency_ms=latency_ms,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
    )


# KEYS[1]: the slots; ARGV: now and lapse (ms), the most at once, this holder's token.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  return 1
end
return 0
"""
SLOTS_KEY = "llm:slots"


@contextmanager
def _slot(deadline: float):
    """One of LLM_MAX_CONCURRENCY slots, waited for until `deadline`."""
    token = uuid.uuid4().hex
    client = redis_client()
    try:
        while True:
            now_ms = int(time.time() * 1000)
            lapse_ms = now_ms + int((settings.LLM_TIMEOUT_SECONDS + 5) * 1000)
            args = [now_ms, lapse_ms, settings.LLM_MAX_CONCURRENCY, token]
            if run_script(_ACQUIRE, [SLOTS_KEY], args):
                break
            if time.monotonic() + 0.1 >= deadline:
                raise LlmUnavailable("busy")
            time.sleep(0.1)
    except RedisError as exc:
        raise LlmUnavailable("slots_unavailable") from exc
    try:
        yield
    finally:
        try:
            client.zrem(SLOTS_KEY, token)
        except RedisError:
            logger.warning("could not give back an LLM slot; it lapses by itself")
