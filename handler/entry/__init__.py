"""What the FunctionGraph package runs: the FunctionGraph handlers (``functiongraph``), the
framework-neutral webhook router (``webhooks``) and the composition root (``runtime``), the one
place that builds the functions from ``Settings``."""
