"""Every Python process started with this folder on PYTHONPATH sees one CUDA device that does not exist: torch's
CUDA queries are patched as soon as torch.cuda has finished defining them."""
import builtins
import sys

_plain_import = builtins.__import__


def _patch():
    cuda = sys.modules.get("torch.cuda")
    if cuda is None or not hasattr(cuda, "get_device_name"):
        return False
    cuda.is_available = lambda: True
    cuda.device_count = lambda: 1
    cuda.get_device_name = lambda *a, **k: "Fake GPU"
    return True


def _import(*args, **kwargs):
    module = _plain_import(*args, **kwargs)
    if _patch():
        builtins.__import__ = _plain_import
    return module


builtins.__import__ = _import
