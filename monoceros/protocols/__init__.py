"""Sans-IO wire protocols: bytes in, events out. Nothing here touches a socket.

Modules in this package import nothing else of monoceros except each other.
"""
