"""The HTTP API and the live dashboard that ``framework run`` serves.

Nothing heavy is imported here: Starlette and uvicorn are imported by the modules that use
them, only when a runner serves HTTP or ``--url`` submits a job to one.
"""
