"""Strip a notebook's outputs except those of cells marked ``# NBVAL_CHECK_OUTPUT``.

nbval compares the stored output of marked cells with a fresh run, so those outputs stay in
git; every other output is dropped to keep notebooks small and diffs readable.

    python scripts/strip_outputs.py notebooks/*.ipynb
"""
import sys

import nbformat

MARK = "# NBVAL_CHECK_OUTPUT"


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if MARK not in cell.source:
            cell.outputs = []
            cell.execution_count = None
        else:  # keep text only: images and widgets would bloat git and cannot be compared
            cell.outputs = [o for o in cell.outputs if o.get("output_type") in ("stream", "execute_result", "error")]
            # One stream output per name: how a kernel splits printed text into chunks depends on timing.
            merged = []
            for o in cell.outputs:
                if o.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                        and merged[-1].get("name") == o.get("name"):
                    merged[-1]["text"] += o["text"]
                else:
                    merged.append(o)
            cell.outputs = merged
            for o in cell.outputs:
                if "data" in o:
                    o["data"] = {k: v for k, v in o["data"].items() if k == "text/plain"}
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
        print("stripped", p)
