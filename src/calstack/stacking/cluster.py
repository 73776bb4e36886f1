"""Dask clusters for calstack: connect to one, or start one for a run.

calstack never starts a cluster unless asked: :func:`connect` starts a ``LocalCluster`` only
for ``'local:N'``, and :func:`resolve_client` only checks what the caller gives. Dask's
``distributed`` package is an optional dependency (``pip install "calstack[cluster]"``); it is
imported only here and in :mod:`calstack.stacking.backends.dask`, when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading

from ..errors import CalstackError, OptionError

__all__ = [
    "PARALLEL",
    "ClusterError",
    "MissingDependencyError",
    "connect",
    "require_distributed",
    "resolve_client",
    "run_tasks",
]

#: Values of ``combine(parallel=...)``.
PARALLEL = (None, "current-scheduler")

log = logging.getLogger("calstack")

_LOCAL = re.compile(r"local(?::(.*))?")

#: Signals held back while a cluster starts or stops (:func:`_signals_deferred`).
_DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class MissingDependencyError(CalstackError, ImportError):
    """An optional dependency that the requested feature needs is not installed."""


class ClusterError(CalstackError, RuntimeError):
    """The Dask cluster could not run a combine (its workers kept dying)."""


def require_distributed():
    """Import and return ``distributed``, or raise :class:`MissingDependencyError`."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            "running on a Dask cluster needs dask.distributed, which is not installed here: "
            'pip install "calstack[cluster]" (on the workers too)') from exc
    return distributed


def resolve_client(client=None, parallel=None):
    """The ``distributed.Client`` a combine runs on, or None to run on this machine.

    Parameters
    ----------
    client : distributed.Client, optional
        A client the caller connected.
    parallel : {None, 'current-scheduler'}
        ``'current-scheduler'``: the client this process has set up
        (``distributed.get_client()``).

    Raises
    ------
    OptionError
        For an unknown ``parallel``, both given, a ``client`` that is not a running
        ``distributed.Client``, or no client to be found.
    MissingDependencyError
        If ``distributed`` is not installed.
    """
    if parallel not in PARALLEL:
        raise OptionError(f"parallel={parallel!r} is not valid; allowed values: None (run here) "
                          "or 'current-scheduler' (the Dask client this process has set up)")
    if client is None and parallel is None:
        return None
    distributed = require_distributed()
    if client is not None and parallel is not None:
        raise OptionError("give client= or parallel='current-scheduler', not both")
    if parallel is not None:
        try:
            return distributed.get_client()
        except ValueError:
            raise OptionError(
                "parallel='current-scheduler' found no Dask client in this process; create one "
                "first (distributed.Client('tcp://scheduler:8786'), or calstack.stacking.cluster.connect) "
                "or pass client=") from None
    if not isinstance(client, distributed.Client):
        raise OptionError(f"client= must be a distributed.Client, not {type(client).__name__}; "
                          "connect one with distributed.Client(address) or "
                          "calstack.stacking.cluster.connect(address)")
    if client.status != "running":
        raise OptionError(f"client= is {client.status}, not running; connect a new one")
    return client


def _local_workers(spec: str) -> int | None:
    """N of ``'local:N'``; None for a scheduler address."""
    match = _LOCAL.fullmatch(spec.strip())
    if match is None:
        return None
    n = match.group(1)
    if n is None or not n.strip().isdigit() or int(n) < 1:
        raise OptionError(f"--scheduler {spec!r}: give local:N with N >= 1 worker processes, "
                          "e.g. local:4, or the address of a running scheduler (tcp://host:8786)")
    return int(n)


@contextlib.contextmanager
def _signals_deferred():
    """Hold back SIGINT, SIGTERM and SIGHUP in the block, then deliver the first one caught.

    A ``LocalCluster`` interrupted while its workers start or stop is left half-made: Dask's
    exit-time clean-up then fails with a traceback after calstack's message. Starting and
    stopping take about a second, so a Ctrl-C then waits that long and is handled as any other
    (outside the main thread, where no handler can be set, nothing is deferred).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in _DEFERRED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def _local_cluster(distributed, n_workers):
    """A client of a ``LocalCluster`` of ``n_workers`` processes, started and closed with
    signals deferred (:func:`_signals_deferred`); the workers' own log lines are shown with
    ``-v`` only (the client raises what matters)."""
    # the kernel is parallel: share the cores between the workers rather than oversubscribe
    # (set when the worker starts; a __main__ that imports numba itself would miss it)
    threads = str(max(1, (os.cpu_count() or 1) // n_workers))
    quiet = logging.WARNING if log.isEnabledFor(logging.INFO) else logging.CRITICAL
    cluster = client = None
    try:
        with _signals_deferred():  # a signal caught here is delivered with the cluster up
            cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                               processes=True, dashboard_address=":0",  # any port
                                               env={"NUMBA_NUM_THREADS": threads},
                                               silence_logs=quiet)
            client = distributed.Client(cluster, set_as_default=False)
        log.info("dask: %d local workers; dashboard at %s", n_workers, client.dashboard_link)
        yield client
    finally:
        with _signals_deferred():
            for started in (client, cluster):
                if started is not None:
                    started.close()


@contextlib.contextmanager
def connect(spec, *, timeout="30s"):
    """A Dask client for the command line's ``--scheduler SPEC``, closed on exit.

    Parameters
    ----------
    spec : str or None
        ``'local:N'`` starts a ``LocalCluster`` of N worker processes on this machine for the
        duration of the ``with`` block, each with one task thread and the kernel's threads
        (``NUMBA_NUM_THREADS``) sharing the cores; anything else is the address of a
        running scheduler (``'tcp://host:8786'``, started with ``dask scheduler``). None yields
        None: run on this machine.
    timeout : str or float
        How long to try to reach a scheduler (Dask's time syntax: ``'30s'``, or seconds).

    Yields
    ------
    distributed.Client or None

    Raises
    ------
    OptionError
        For a malformed ``local:N`` or a scheduler that does not answer.
    MissingDependencyError
        If ``distributed`` is not installed.

    Examples
    --------
    >>> with calstack.stacking.cluster.connect("local:4") as client:  # doctest: +SKIP
    ...     master = calstack.combine(files, client=client, **calstack.RECIPE)
    """
    if spec is None:
        yield None
        return
    n_workers = _local_workers(str(spec))
    distributed = require_distributed()
    if n_workers is not None:
        with _local_cluster(distributed, n_workers) as client:
            yield client
        return
    try:
        client = distributed.Client(spec, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise OptionError(f"--scheduler {spec!r}: no Dask scheduler answers there ({exc}); "
                          "start one (`dask scheduler`, and `dask worker ADDRESS` on each "
                          "machine) or fix the address; local:N runs N workers here") from exc
    try:
        yield client
    finally:
        with _signals_deferred():
            client.close()


def run_tasks(client, function, items, *, shared, on_result=None, **options) -> list:
    """``function(item, shared, **options)`` for each of ``items``, each a task on the cluster
    of ``client``; ``shared`` is sent to the workers once (not with every task).

    ``on_result`` is called, in this process, with each result as it arrives; the results are
    returned in the order of ``items``. An error of a task is raised here (the other tasks
    cancelled).
    """
    from distributed import as_completed

    [sent] = client.scatter([shared], broadcast=True)
    futures = client.map(function, items, shared=sent, pure=False, **options)
    position = {future.key: i for i, future in enumerate(futures)}
    results = [None] * len(items)
    try:
        for future in as_completed(futures, loop=client.loop):
            results[position[future.key]] = result = future.result()
            if on_result is not None:
                on_result(result)
    finally:
        client.cancel([*futures, sent])
    return results
