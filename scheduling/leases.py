"""Keeps the leases of sends in progress alive while they last.

A claimed delivery is `sending` with a lease (DELIVERY_LEASE_SECONDS); when the lease runs
out the reaper takes the worker for dead and hands the delivery to another. A short lease
finds a dead worker soon, and this heartbeat keeps a live one's sends from being taken
over however long they take (a slow provider, rate-limit waits, a long message's parts).
It runs in a thread of the sending process, so it dies with it: a killed worker's leases
simply stop being renewed.
"""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from scheduling.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)


class LeaseHeartbeat:
    """`with LeaseHeartbeat(ids):` renews the leases of those deliveries still `sending`
    every third of DELIVERY_LEASE_SECONDS until the block ends."""

    def __init__(self, delivery_ids: list[int]) -> None:
        self.delivery_ids = list(delivery_ids)
        self.every = settings.DELIVERY_LEASE_SECONDS / 3
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> "LeaseHeartbeat":
        if self.delivery_ids:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                self._renew()
        finally:
            connection.close()  # this thread's own connection

    def _renew(self) -> None:
        until = timezone.now() + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
        try:
            Delivery.objects.filter(pk__in=self.delivery_ids, status=DeliveryStatus.SENDING).update(
                lease_until=until
            )
            self.renewals += 1
        except DatabaseError:
            # The lease may run out meanwhile; the cost is a resend in the crash window.
            logger.warning("could not renew the leases of %d sends", len(self.delivery_ids))
            connection.close()
