"""docs/walkthrough.ipynb runs top to bottom, so it can never rot (nbclient + ipykernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from numpy_gpt.data.datasets import DataError, find_data_file

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.ipynb"


def test_the_walkthrough_notebook_executes():
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel")
    try:
        find_data_file("tinyshakespeare/input.txt")
    except DataError:
        pytest.skip("Tiny Shakespeare is not in the data search path (the notebook trains on it)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "exactly the parameters' names: True" in text
    assert "ROMEO:" in text and "gradients, worst rel error" in text
    # §8, Llama blocks: the forward shape by shape, RMSNorm and RoPE backward checked against
    # finite differences (the numbers themselves are asserted in the notebook), a training run
    assert "attention, 4 q / 2 kv heads" in text and "RoPE interleaved rope_backward" in text
    assert "val loss at step 249: GPT-2" in text
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images == 3  # the loss curve, the attention maps, GPT-2's and Llama's curves
