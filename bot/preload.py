"""Imported by the parse pool's forkserver before it forks the workers (app._parse_pool):
builds once what every parse needs on its first item, so that the workers share it.

text.py's folding tables (every BMP code point, about 12 MB of small objects and 0.3 s)
are otherwise built lazily in each worker on its first job; built here, each worker gets
them at fork, copy-on-write. gc.freeze() then keeps the collector from walking (and so
writing to) those objects in the workers.
"""

import gc

from . import text

text.build_tables()
gc.freeze()
