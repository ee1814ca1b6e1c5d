"""``python -m tortoise_lab.tools.bench --worker SPEC.json``: one configuration in this process (run by
``tortoise-lab bench``, one process per configuration)."""

import json
import sys
from pathlib import Path

from tortoise_lab.tools.bench.configs import RECORD_PREFIX
from tortoise_lab.tools.bench.worker import worker

if len(sys.argv) != 3 or sys.argv[1] != "--worker":
    raise SystemExit("usage: python -m tortoise_lab.tools.bench --worker SPEC.json (run by `tortoise-lab bench`)")
print(RECORD_PREFIX + json.dumps(worker(json.loads(Path(sys.argv[2]).read_text()))), flush=True)
