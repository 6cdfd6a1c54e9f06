"""WSGI glue for the blocking workers (sync, gthread): environ, ``wsgi.input``, responses."""
