"""The director workflow's logic: the director's registry and experiment runs, the envoy agent.

Knows nothing of gRPC: the director satisfies ``transport.director_handlers.DirectorHandler``
and the envoy talks to the director through the ``ports.DirectorPort`` Protocol; ``app/`` wires
both to the transport.
"""
