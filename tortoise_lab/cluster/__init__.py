"""``read`` on a Ray cluster: the same book, byte for byte, from many workers.

    from tortoise_lab.cluster import RayReader
    with RayReader(workers=2) as reader:              # a local cluster for the run; address="auto" joins one
        settings = Settings.from_preset("fast", device=reader.device)
        read_voice(tts, "book.txt", chunks, "tom", settings, "out", None, 1, command, engine=reader)

``engine.py`` is the driver's side (the workers, the order of the chunks, retries, the progress bar); ``worker.py``
the worker's (a Ray actor that holds a model set, built from a small picklable description). What is written, and
when, is ``reading``'s, the same as for a plain read. Ray is the optional ``cluster`` extra
(``pip install 'tortoise-lab[cluster]'``); nothing here imports it before a reader is made.
"""

from tortoise_lab.cluster.engine import (DEFAULT_THREADS, INSTALL_COMMAND, MAX_ATTEMPTS, RAY_PIN, ClusterError,
                                         RayMissing, RayReader, check_address, cluster_device, import_ray)
from tortoise_lab.cluster.worker import FAULTS_VARIABLE, ChunkWorker, WorkerSpec

__all__ = ["RayReader", "RayMissing", "ClusterError", "check_address", "cluster_device", "import_ray",
           "DEFAULT_THREADS", "INSTALL_COMMAND", "MAX_ATTEMPTS", "RAY_PIN", "FAULTS_VARIABLE", "ChunkWorker",
           "WorkerSpec"]
