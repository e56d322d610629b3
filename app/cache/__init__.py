"""The response cache and its invalidation by surrogate key.

Placement: `keys` names what responses show and what writes change (every domain imports
it); `clock` is the per-key invalidation state the workers of one machine share; `store` is
the ASGI middleware and its bounded entry store; `publish` turns the keys a transaction
touched into invalidations once it has committed (this machine at once, other machines
through PostgreSQL NOTIFY, CDNs through the outbox); `channel` listens for other machines'
invalidations; `cdn` sends purges to Varnish, Fastly or Cloudflare.
"""
