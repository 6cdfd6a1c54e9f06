# Raises while being executed: the error must name this file and line 4.
workers = 2

timeout = 1 / 0
