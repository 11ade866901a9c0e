"""The authentication gateway in front of a Prefect server: tokens, roles, audit.

- :mod:`aiorch.gateway.tokens`: tokens issued once and stored as scrypt hashes;
- :mod:`aiorch.gateway.roles` and :mod:`aiorch.gateway.route_table`: what each role may
  do, route by route of Prefect's API;
- :mod:`aiorch.gateway.app`: the ASGI proxy (``aiorch gateway``);
- :mod:`aiorch.gateway.limiter` and :mod:`aiorch.gateway.audit`: failed attempts and
  refusals.
"""
