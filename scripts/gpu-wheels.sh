#!/usr/bin/env bash
# Fills .whl/ with what scripts/gpu-check.sh needs on the lent GPU machine and cannot fetch there (it has no network):
#   .whl/*.whl        the packages its image lacks (pinned; Python 3.12, x86-64 Linux), deepspeed built here
#   .whl/assets/      the bench's voice (tom, from the official assets) and the speaker encoder's weights (notebook 04)
# Run it here, in the repository root the device tool sends, with network to the package index; then carry ".whl"
# (benchmarks/README.md, "Running the GPU check"). It prints what travels against the 64 MiB limit.
#
# The machine's image has torch 2.11, transformers, numpy, matplotlib, scipy, pytest (+ xdist), ninja, psutil,
# pyyaml and the rest of DEVICE_HAS below (/work/.library/device/KINDS.md, read 2026-11-17); what it lacks is pinned
# in WHEELS at the versions of constraints.txt / the project environment. Left out on purpose, though declared by a
# package here, because nothing imports them when the notebooks run (saves 13 MB): debugpy (ipykernel's debugger),
# jedi and parso (IPython's completion), widgetsnbextension and jupyterlab-widgets (front-end files of ipywidgets);
# rotary-embedding-torch, in pyproject.toml, is imported nowhere.
#
#   GPU_WHEELS_DIR=DIR GPU_WHEELS_PYTHON=3.11 bash scripts/gpu-wheels.sh   # the same set for a local Python 3.11 test
set -euo pipefail
cd "$(dirname "$0")/.."
WHL=${GPU_WHEELS_DIR:-.whl}
PY_VERSION=${GPU_WHEELS_PYTHON:-3.12}
PROJECT_PYTHON=${PROJECT_PYTHON:-.venv/bin/python}  # builds the deepspeed wheel (it needs torch importable)
ASSETS_HOME=${TORTOISE_LAB_HOME:-$("$PROJECT_PYTHON" -c 'from tortoise_lab.assets import data_dir; print(data_dir())')}

WHEELS=(
  # tortoise_lab's own imports
  inflect==7.6.0 jaraco.functools==4.6.0 more-itertools==11.2.1 typeguard==4.6.1 typing-extensions==4.16.0
  unidecode==1.4.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9
  # deepspeed's (the wheel itself is built below)
  hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  # the notebooks: nbval, its kernel, ipywidgets (05), noisereduce and webrtcvad (04)
  nbval==0.11.0 ipykernel==7.4.0 ipython==9.18.1 ipython-pygments-lexers==1.1.1 matplotlib-inline==0.2.2
  pexpect==4.9.0 ptyprocess==0.7.0 prompt-toolkit==3.0.53 wcwidth==0.9.4 stack-data==0.6.3 executing==2.3.0
  asttokens==3.0.2 pure-eval==0.2.4 traitlets==5.16.1 jupyter-client==8.10.0 jupyter-core==5.9.1 pyzmq==27.3.0
  tornado==6.6.1 comm==0.2.3 nest-asyncio2==1.7.4 nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 ipywidgets==8.1.9
  noisereduce==3.0.3 webrtcvad-wheels==2.0.14.post1
)
DEEPSPEED=deepspeed==0.19.8
LEFT_OUT="debugpy jedi parso widgetsnbextension jupyterlab-widgets"
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

# Keep .whl/ out of git (the device tool carries it only when named in `carry`).
if [ "$WHL" = .whl ] && ! git check-ignore -q .whl/x.whl; then
  echo "/.whl/" >>"$(git rev-parse --git-common-dir)/info/exclude"
fi
mkdir -p "$WHL"
rm -f "$WHL"/*.whl  # one version of each: two would stop the install there
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux_2_5_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
  --implementation cp "${platforms[@]}" -d "$WHL" "${WHEELS[@]}"
# deepspeed is a source archive only; its wheel (pure Python; the kernels are built on first use, there) is built here
# with the project environment's torch importable, as scripts/setup.sh installs it.
"$PROJECT_PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$WHL" "$DEEPSPEED"

# The bench speaks as the built-in voice tom (the official assets: `tortoise-lab assets`), and notebook 04 ranks
# takes with the speaker encoder; neither can be fetched there.
if [ ! -d "$ASSETS_HOME/assets/voices/tom" ] || [ ! -f "$ASSETS_HOME/speaker_encoder/pretrained.pt" ]; then
  "$PROJECT_PYTHON" -m tortoise_lab assets
fi
rm -rf "$WHL/assets"
mkdir -p "$WHL/assets/voices/tom" "$WHL/assets/speaker_encoder"
cp "$ASSETS_HOME"/assets/voices/tom/*.wav "$WHL/assets/voices/tom/"
gzip -9 -c "$ASSETS_HOME/speaker_encoder/pretrained.pt" >"$WHL/assets/speaker_encoder/pretrained.pt.gz"  # 17.1 -> 15.7 MB

# Every requirement of a carried wheel must be carried, on the machine, or left out on purpose.
"$PROJECT_PYTHON" - "$WHL" "$PY_VERSION" "$DEVICE_HAS" "$LEFT_OUT" <<'EOF'
import re, sys, zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

folder, version, device, left_out = Path(sys.argv[1]), sys.argv[2], set(sys.argv[3].split()), set(sys.argv[4].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
env = {"python_version": version, "python_full_version": version + ".3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
carried, needs = {}, []
for wheel in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode().replace("\r\n", "\n")
    name = norm(re.search(r"^Name: (.+)$", meta, re.M).group(1))
    carried[name] = re.search(r"^Version: (.+)$", meta, re.M).group(1)
    for line in re.findall(r"^Requires-Dist: (.+)$", meta, re.M):
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(env):
            needs.append((name, requirement))
device = {norm(n) for n in device}
missing = [f"{who} needs {req}" for who, req in needs
           if norm(req.name) not in carried and norm(req.name) not in device and norm(req.name) not in left_out]
wrong = [f"{who} needs {req}, carried {carried[norm(req.name)]}" for who, req in needs
         if norm(req.name) in carried and not req.specifier.contains(carried[norm(req.name)], prereleases=True)]
print(f"{len(carried)} wheels; requirements met by the wheels, the machine's image, or left out on purpose "
      f"({', '.join(sorted(left_out))})" if not (missing or wrong) else "\n".join(["PROBLEMS:"] + missing + wrong))
sys.exit(1 if missing or wrong else 0)
EOF

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
wheels=$(du -cb "$WHL"/*.whl | tail -1 | cut -f1)
assets=$(du -sb "$WHL/assets" | cut -f1)
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
untracked=$(git ls-files -z -o --exclude-standard | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
total=$((wheels + assets + tracked + untracked))
echo "$WHL: wheels $(mib "$wheels"), assets $(mib "$assets"); with the working tree ($(mib "$tracked") tracked," \
     "$(mib "$untracked") untracked) $(mib "$total") travels of the 64 MiB limit."
[ "$WHL" != .whl ] || [ "$total" -le $((64 * 1048576)) ] || { echo "Too large to travel: see benchmarks/README.md." >&2; exit 1; }
