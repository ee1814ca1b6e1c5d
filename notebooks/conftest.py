"""pytest over the notebooks (nbval, see pyproject.toml) runs them in test mode: the embedded model, short work."""

import os

from tortoise_lab.workspace import TEST_MODE_VARIABLE

os.environ.setdefault(TEST_MODE_VARIABLE, "1")  # the kernels nbval starts inherit this process's environment
