"""gunicorn's hooks for prometheus-client's multiprocess mode (operations/metrics_processes.py):
`gunicorn companion.wsgi:application --config python:companion.gunicorn_config`."""

from operations.metrics_processes import forget_earlier_runs, process_exited


def on_starting(server) -> None:
    """In the master, before its workers start."""
    forget_earlier_runs()


def child_exit(server, worker) -> None:
    process_exited(worker.pid)
