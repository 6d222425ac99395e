"""Between python-telegram-bot's event loop and Django's synchronous database code.

Handlers are coroutines; the commands they call use the ORM, which must not run inside
an event loop. Handlers therefore call `await run_sync(function, ...)`:

- Webhook path (a Celery task, or a test, calls application.process_update): the loop
  runs in a background thread and the database work is handed back to the calling thread,
  which waits for it. There Django's connection handling applies (the task's
  close_old_connections), and a test's open transaction is visible.
- Polling path (manage.py run_telegram_bot): there is no calling thread to hand back to;
  asgiref's sync_to_async runs the work in its one thread, with a connection check first.
"""

import asyncio
import functools
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import ContextVar
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

# Set inside the coroutine that processes one update on the webhook path.
_work: ContextVar["queue.SimpleQueue | None"] = ContextVar("bot_work", default=None)
_failures: ContextVar["list[BaseException] | None"] = ContextVar("bot_failures", default=None)


async def run_sync(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    call = functools.partial(function, *args, **kwargs)
    work = _work.get()
    if work is None:
        return await sync_to_async(_checked, thread_sensitive=True)(call)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    work.put((call, loop, done))
    return await done


def _checked(call: Callable[[], Any]) -> Any:
    # A long-running poller would otherwise keep a connection PostgreSQL has dropped.
    close_old_connections()
    return call()


def bind(work: queue.SimpleQueue, failures: list[BaseException]) -> None:
    """Called first in the coroutine that processes an update on the webhook path."""
    _work.set(work)
    _failures.set(failures)


def note_failure(error: BaseException) -> None:
    """From the error handler: the update should be processed again (webhook path)."""
    failures = _failures.get()
    if failures is not None:
        failures.append(error)


def serve_until_done(work: queue.SimpleQueue, future: Future, timeout: float) -> Any:
    """Runs the database work the loop hands over, in this thread, until the future is
    done; then returns its result (or raises its error, or TimeoutError)."""
    future.add_done_callback(lambda _: work.put(None))
    deadline = time.monotonic() + timeout
    while True:
        try:
            item = work.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            future.cancel()
            raise TimeoutError(f"the update was not processed within {timeout:.0f}s") from None
        if item is None:
            return future.result()
        call, loop, done = item
        try:
            result = call()
        except Exception as error:  # handed to the awaiting handler, not swallowed
            loop.call_soon_threadsafe(_settle, done, None, error)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)


def _settle(done: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
