"""Markdown tables for the TinySAM report: one row per dict, a column per (title, key, format); a key with a
``<key>_std`` companion shows mean ± std when the row averages several seeds."""

from __future__ import annotations


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value, spread = row.get(key), row.get(f"{key}_std")
            cell = "n/a" if value is None else (fmt.format(value) if fmt else str(value))
            cells.append(cell + (f" ± {fmt.format(spread)}" if spread is not None and len(row.get("seeds", [])) > 1
                                 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
