"""The inventory: find it, load it (cached), validate it, resolve per-host settings.

Import from the modules (``oneoff.config.model``, ``.find``, ``.load``), not from
here: this package imports nothing, so ``oneoff.names`` and
``oneoff.defaults`` stay free to import from any layer.
"""
