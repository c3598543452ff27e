"""The serving stage: profiles over HTTP (``graphprof serve``), its API keys (``graphprof keys``), its audit trail
(``graphprof audit``) and the Redis online store (``graphprof publish``).

``app.py`` is the FastAPI application; ``store.py`` what it answers from (the work directory, reloaded when it
changes); ``keys.py`` the keys; ``audit.py`` the trail; ``events.py`` the durable event journal applied by
``graphprof update``; ``server.py`` starts it all.
"""
