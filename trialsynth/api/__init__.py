"""The product API (issue 13): versioned ``/synth``, ``/impute``, ``/evidence``, ``/simulate``, ``/jobs``
and ``/ingest`` endpoints over the lakehouse, long work as Dagster runs. ``trialsynth api serve``
serves it; :func:`create_app` builds it (imported lazily: the power report, which Dagster runs import,
does not need FastAPI)."""


def create_app(*args, **kwargs):
    """See :func:`trialsynth.api.app.create_app`."""
    from trialsynth.api.app import create_app as _create_app

    return _create_app(*args, **kwargs)
