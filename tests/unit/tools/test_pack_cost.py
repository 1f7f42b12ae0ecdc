"""The pack load/reload measurement: what it changes for the reload, and that it undoes it."""

from __future__ import annotations

from worker.tools.bench.many import write_many_policies
from worker.tools.bench.pack_cost import measure


def test_measure_reloads_the_edited_pack_and_puts_it_back(tmp_path, tokenizer):
    write_many_policies(tmp_path, 30, 20, 60, "7")
    files = {p.name: p.read_bytes() for p in tmp_path.glob("*.md")}
    result = measure(tmp_path, tokenizer, 4096, edits=4, full=True)
    assert result["policies"] == 30 and result["compile_s"] > 0
    # Four files edited and one added are new; one removed.
    assert (result["reload_changed"], result["reload_removed"]) == (5, 1)
    assert result["catalog_mib"] >= 0 and result["reload_s"] >= 0 and result["full_reload_s"] > 0
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.md")} == files
