"""The detector as an HTTP service (``asrguard serve``; operators' guide: ``docs/service.md``).

``app`` builds the ASGI app; ``gate`` enforces limits, keys and rate limits before and while a
body is read; ``upload`` reads and decodes uploads within the limits; ``scorer`` scores them;
``access``, ``metrics``, ``limits``, ``errors`` and ``page`` are the parts those use;
``server`` runs it under uvicorn.
"""
