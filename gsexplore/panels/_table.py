"""Result tables: itables' DataTable widget, its own labels in the panel's language."""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import pandas as pd

from ._i18n import msg

__all__ = ["datatables_language", "new_table"]

_DT_KEYS = ("search", "info", "infoEmpty", "infoFiltered", "lengthMenu", "zeroRecords", "emptyTable")


def datatables_language(lang: str) -> dict[str, Any]:
    """DataTables' own words ("Search:", "Showing 1 to 10...") from the catalogue (``ui.dt.*``)."""
    words: dict[str, Any] = {k: msg(f"ui.dt.{k}", lang) for k in _DT_KEYS}
    words["entries"] = {"_": msg("ui.dt.rows", lang), "1": msg("ui.dt.row", lang)}
    words["paginate"] = {"first": "«", "last": "»", "next": "›", "previous": "‹"}
    return words


def new_table(lang: str, **options: Any) -> W.Widget:
    """An empty results table (sortable, searchable, one row selectable); ``options`` are DataTables'."""
    from itables.widget import ITable

    kw: dict[str, Any] = dict(classes="display compact nowrap", select={"style": "single"},
                              language=datatables_language(lang), pageLength=10, lengthMenu=[10, 25, 100],
                              scrollX=True)  # a wide result scrolls inside the table, the panel stays its width
    kw.update(options)
    table = ITable(df=pd.DataFrame({"": []}), **kw)
    table.layout.width = "auto"  # the widget's box (DataTables' own `layout` option is something else)
    return table
