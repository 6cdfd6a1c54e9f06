# Names that are not settings: some deserve a warning, some must stay silent.
import os
from pathlib import Path

worker = 4
timeout = 5
spew = True
_private = 1
helper_dir = Path(os.path.dirname(__file__))


class Helper:
    pass


def post_frok(server, worker):
    pass


def compute_workers():
    return 2
