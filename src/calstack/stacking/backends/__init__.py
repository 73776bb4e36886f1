"""Where a prepared combine job runs: ``local`` (reader threads and the parallel kernel on this
machine) and ``dask`` (bands of rows as tasks on a ``distributed`` cluster). Both take the same
arguments; :func:`calstack.stacking.dispatch.run` chooses.
"""
