"""Writes docs/api.md from the package's source: every public class, field, type, default, doc.

Attribute docstrings (the string under an annotated field) exist only in the source, so the page
is made from the syntax tree. `python -m tools.api_doc` rewrites it; a unit test fails when the
page and the code differ.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "components/postgres_apps"
PAGE = REPO / "docs/api.md"
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "apps.py",
        "The component",
        (
            "PostgresApps",
            "PostgresAppsArgs",
            "AppArgs",
            "PostgresServerArgs",
            "VerificationArgs",
            "UnmanagedArgs",
        ),
    ),
    ("app_database.py", "One app", ("AppDatabase", "AppDatabaseArgs")),
    (
        "verification/resource.py",
        "The verification gate",
        ("ConnectivityCheck", "ConnectivityCheckArgs", "ConnectivityPeer"),
    ),
)
HEADER = """# postgres-apps API

Generated from the source by `python -m tools.api_doc` (a unit test keeps it current). Import
everything below from `postgres_apps`. Args of `PostgresApps` are the stack config's shape in
snake_case (README "Use it from your own program"); defaults not shown in a table are given in the
field's description, and are the stack config's (docs/runbooks/postgres-connectivity.md).
"""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    default: str
    doc: str


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def fields(cls: ast.ClassDef) -> list[Field]:
    """Annotated fields in order, each with the string literal that follows it."""
    out: list[Field] = []
    body = cls.body
    for i, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        doc = ""
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            doc = str(nxt.value.value)
        default = ast.unparse(node.value) if node.value is not None else ""
        out.append(
            Field(node.target.id, _one_line(ast.unparse(node.annotation)), default, _one_line(doc))
        )
    return out


def kind(cls: ast.ClassDef) -> str:
    bases = {ast.unparse(b) for b in cls.bases}
    if "TypedDict" in bases:
        total = any(
            k.arg == "total" and isinstance(k.value, ast.Constant) and k.value.value is False
            for k in cls.keywords
        )
        return "TypedDict (every key optional)" if total else "TypedDict"
    if any("Resource" in b for b in bases):
        return "resource: " + ", ".join(sorted(bases))
    return "dataclass"


def section(path: Path, title: str, names: tuple[str, ...]) -> list[str]:
    tree = ast.parse(path.read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    lines = [
        f"## {title}",
        "",
        f"Source: `components/postgres_apps/{path.relative_to(PACKAGE)}`",
        "",
    ]
    for name in names:
        cls = classes[name]
        is_resource = kind(cls).startswith("resource")
        lines += [f"### `{name}`", "", f"*{kind(cls)}.* {_one_line(ast.get_docstring(cls) or '')}"]
        rows = fields(cls)
        if rows:
            head = "output" if is_resource else "field"
            lines += ["", f"| {head} | type | default | description |", "|---|---|---|---|"]
            lines += [
                f"| `{f.name}` | `{f.type}` | {f'`{f.default}`' if f.default else ''} | {f.doc} |"
                for f in rows
            ]
        lines.append("")
    return lines


def render() -> str:
    lines = [HEADER]
    for file, title, names in SECTIONS:
        lines += section(PACKAGE / file, title, names)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    PAGE.write_text(render())
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
