"""Everything that never ships in the FunctionGraph package: the CLI, the local stack (``up``,
``demo``, ``invoke``), the HTTP servers (Starlette for ``up``, functions-framework for
containers), the topic worker service with its /healthz and /metrics, the console output and
the package builder. ``handler/entry/`` holds what the FunctionGraph package runs."""
