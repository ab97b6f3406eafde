"""The web console (``/console``, docs/console.md): the requests and their trails, what is in
flight, pending approvals (decided here with four eyes), the safety state and plots.

Served by ``ecs-detach up``, the worker and the container's webhook target; server-rendered
(Jinja2, the ``local`` extra), no script. ``app`` holds the routes, ``_auth`` who may look and
decide, ``_views`` what each page reads.
"""

from handler.local.console.app import Console, ConsoleRequest, ConsoleResponse, starlette_route

__all__ = ["Console", "ConsoleRequest", "ConsoleResponse", "starlette_route"]
