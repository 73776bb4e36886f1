"""The one dispatcher: where prepared combine jobs run, this machine or a Dask cluster.

:func:`calstack.combine`, :func:`calstack.combine_many` and the grouped jobs all end here. Both
backends (:mod:`~calstack.stacking.backends.local`, :mod:`~calstack.stacking.backends.dask`)
take the same arguments and yield one ``Result`` per job (``calstack.combine`` makes
the ``Master`` of it), in order.
"""

from __future__ import annotations

from .backends import local
from .cluster import resolve_client

__all__ = ["run", "run_many"]


def run_many(jobs, *, client=None, parallel=None, progress=False):
    """Run prepared jobs; yield each one's :class:`~calstack.stacking.result.Result`, in order.

    Parameters
    ----------
    jobs : iterable of calstack.stacking.job.Job
        Prepared combines (:func:`calstack.prepare`), each readable until the next is taken.
    client : distributed.Client, optional
        Run on this Dask cluster: every job's bands as tasks of one graph.
    parallel : {None, 'current-scheduler'}
        ``'current-scheduler'``: the Dask client this process has set up.
    progress : bool, str or calstack.progress.Progress
        A bar over each job's rows (see :func:`calstack.progress.as_progress`).

    Yields
    ------
    Result
    """
    client = resolve_client(client, parallel)
    if client is None:
        backend = local
    else:  # only a run on a cluster needs the Dask backend
        from .backends import dask as backend
    yield from backend.run_many(jobs, client=client, progress=progress)


def run(job, *, client=None, parallel=None, progress=False):
    """Run one prepared job (see :func:`run_many`); its :class:`~calstack.stacking.result.Result`."""
    (master,) = run_many([job], client=client, parallel=parallel, progress=progress)
    return master
