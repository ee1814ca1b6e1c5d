"""Store the notebooks clean: no execution counts, no run metadata, and outputs only where nbval checks them.

A code cell whose first line is ``# NBVAL_CHECK_OUTPUT`` keeps its text outputs (printed text and plain-text
results: what ``pytest --nbval-lax`` compares) and an execution count (nbval skips cells without one); every other
output (audio, images, widgets, tables of timings) is
dropped. ``--execute`` first runs each notebook in test mode (``TORTOISE_LAB_TEST_MODE=1``, the project kernel),
so the checked outputs are refreshed from a real run::

    .venv/bin/python scripts/clean_notebooks.py                     # clean notebooks/*.ipynb in place
    .venv/bin/python scripts/clean_notebooks.py --execute           # run them in test mode, then clean
    .venv/bin/python scripts/clean_notebooks.py --check             # exit 1 if any is not stored clean (a test runs this)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
KEPT_CELL_METADATA = ("tags",)
KEPT_NOTEBOOK_METADATA = ("kernelspec",)
TEXT_ONLY = "text/plain"
KERNEL_NAME = "tortoise-lab"
EXECUTE_TIMEOUT_S = 1800


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)


def _text_outputs(outputs: list, count: int) -> list:
    kept = []
    for output in outputs:
        if output.output_type == "stream":
            kept.append(nbformat.v4.new_output("stream", name=output.name, text=output.text))
        elif output.output_type == "execute_result" and TEXT_ONLY in output.data:
            kept.append(nbformat.v4.new_output("execute_result", data={TEXT_ONLY: output.data[TEXT_ONLY]},
                                               execution_count=count))
    return kept


def clean(notebook) -> None:
    """In place: what the module docstring says is kept, nothing else."""
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEPT_NOTEBOOK_METADATA}
    notebook.metadata["language_info"] = {"name": "python"}
    checked = 0
    for index, cell in enumerate(notebook.cells):
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA}
        cell.id = f"cell-{index:02d}"
        if cell.cell_type == "code" and is_checked(cell):
            # nbval compares only cells with an execution count (an unrun cell with outputs fails): checked cells
            # are numbered 1, 2, ... in order, every other cell is stored unrun.
            checked += 1
            cell.execution_count = checked
            cell.outputs = _text_outputs(cell.outputs, checked)
        elif cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
        cell.pop("attachments", None)


def execute(notebook, folder: Path) -> None:
    from nbclient import NotebookClient

    os.environ["TORTOISE_LAB_TEST_MODE"] = "1"
    NotebookClient(notebook, timeout=EXECUTE_TIMEOUT_S, kernel_name=KERNEL_NAME,
                   resources={"metadata": {"path": str(folder)}}).execute()


def cleaned_text(path: Path, run: bool = False) -> str:
    notebook = nbformat.read(path, as_version=4)
    if run:
        execute(notebook, path.parent)
    clean(notebook)
    return nbformat.writes(notebook) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    parser.add_argument("--execute", action="store_true", help="run each notebook in test mode before cleaning")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        text = cleaned_text(path, run=args.execute)
        if path.read_text() != text:
            dirty.append(path)
            if not args.check:
                path.write_text(text)
    if args.check and dirty:
        print(f"Not stored clean: {', '.join(str(p) for p in dirty)}; run scripts/clean_notebooks.py.",
              file=sys.stderr)
        return 1
    for path in dirty:
        print(f"cleaned {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
