"""The configuration reference, generated from the pydantic-settings classes' source.

Every `BaseSettings` subclass under src/ is found by reading the source (nothing is
imported), and each field becomes a row: environment variable, type, default and the
comment written above it. A new setting therefore appears in the docs without anyone
editing them; tests/unit/test_docs.py checks that every field of every class does.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "src"
CONSTRAINTS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    type: str
    default: str
    comment: str


@dataclass(frozen=True)
class SettingsClass:
    name: str
    module: str
    path: str
    prefix: str
    doc: str
    settings: list[Setting]
    properties: dict[str, str]  # derived values (`templates_path`), as the variables they come from


def settings_classes(sources: Path = SOURCES) -> list[SettingsClass]:
    """Every pydantic-settings class under `sources`, in file order."""
    found = []
    for path in sorted(sources.rglob("*.py")):
        text = path.read_text()
        if "BaseSettings" not in text:
            continue
        tree = ast.parse(text)
        module = ".".join(path.relative_to(sources).with_suffix("").parts)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(_name(base) == "BaseSettings" for base in node.bases):
                found.append(_read_class(node, text, module, path.relative_to(ROOT).as_posix(), ast.get_docstring(tree) or ""))
    core = next((c for c in found if c.prefix == "FACEFUSE_"), None)
    return [_name_core_defaults(c, core) for c in found] if core else found


def _name_core_defaults(cls: SettingsClass, core: SettingsClass) -> SettingsClass:
    """`get_settings().var_dir` in a default reads as the variable a reader sets: FACEFUSE_VAR_DIR."""
    fields = {s.name for s in core.settings}

    def name(match: re.Match) -> str:
        attr = match.group(1)
        if attr in fields:
            return f"FACEFUSE_{attr.upper()}"
        return core.properties.get(attr, match.group(0))

    settings = [Setting(s.name, s.env, s.type, re.sub(r"get_settings\(\)\.(\w+)", name, s.default), s.comment)
                for s in cls.settings]
    return SettingsClass(cls.name, cls.module, cls.path, cls.prefix, cls.doc, settings, cls.properties)


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _read_class(node: ast.ClassDef, text: str, module: str, path: str, module_doc: str) -> SettingsClass:
    lines = text.splitlines()
    prefix, settings, properties = "", [], {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and any(_name(d) == "property" for d in item.decorator_list):
            returned = item.body[-1]
            if isinstance(returned, ast.Return) and returned.value is not None:
                properties[item.name] = ast.get_source_segment(text, returned.value)
        if isinstance(item, ast.Assign) and any(_name(t) == "model_config" for t in item.targets):
            for keyword in getattr(item.value, "keywords", []):
                if keyword.arg == "env_prefix":
                    prefix = ast.literal_eval(keyword.value)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            name = item.target.id
            type_text = ast.get_source_segment(text, item.annotation)
            default, bounds = _default(item.value, text)
            if bounds:
                type_text += f" ({bounds})"
            settings.append(Setting(name, (prefix + name).upper(), type_text, default, _comment(lines, item)))
    properties = {k: re.sub(r"self\.(\w+)", lambda m: (prefix + m.group(1)).upper(), v) for k, v in properties.items()}
    return SettingsClass(node.name, module, path, prefix, module_doc.splitlines()[0] if module_doc else "", settings, properties)


def _default(value: ast.expr | None, text: str) -> tuple[str, str]:
    if value is None:
        return "required", ""
    bounds = ""
    if isinstance(value, ast.Call) and _name(value.func) == "Field":
        keywords = {k.arg: k.value for k in value.keywords}
        bounds = ", ".join(f"{CONSTRAINTS[k]} {ast.get_source_segment(text, v)}" for k, v in keywords.items() if k in CONSTRAINTS)
        if "default_factory" in keywords:
            factory = keywords["default_factory"]
            value = factory.body if isinstance(factory, ast.Lambda) else factory
        elif "default" in keywords:
            value = keywords["default"]
        elif value.args:
            value = value.args[0]
    try:  # constant arithmetic (10 * 1024 * 1024) reads better as its value
        evaluated = eval(compile(ast.Expression(value), "<default>", "eval"), {"__builtins__": {}}, {})
        if isinstance(evaluated, float) and evaluated.is_integer() and not isinstance(value, ast.Constant):
            evaluated = int(evaluated)
        return repr(evaluated) if isinstance(evaluated, str) else str(evaluated), bounds
    except Exception:
        pass
    return ast.get_source_segment(text, value).replace("project_root()", "<checkout>"), bounds


def _comment(lines: list[str], item: ast.AnnAssign) -> str:
    """The comment block right above the field, plus a comment at the end of its line.

    A field under another that carries a comment, with no blank line between (a group
    such as the TLS files), points at that comment instead of showing nothing."""
    above, row = [], item.lineno - 2
    while row >= 0 and lines[row].strip().startswith("#"):
        above.insert(0, lines[row].strip().lstrip("#").strip())
        row -= 1
    code = (ast.get_source_segment("\n".join(lines), item) or "").splitlines()
    tail = lines[item.end_lineno - 1].split(code[-1], 1)[-1].strip() if code else ""
    if tail.startswith("#"):
        above.append(tail.lstrip("#").strip())
    elif not above:
        while row >= 0 and lines[row].strip() and not lines[row].strip().startswith("#"):
            row -= 1
        if row >= 0 and lines[row].strip().startswith("#"):
            above.append("(see the group's note above)")
    return " ".join(above)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(classes: list[SettingsClass] | None = None) -> str:
    """Markdown: one section per settings class, one table row per setting."""
    out = []
    for cls in sorted(classes if classes is not None else settings_classes(), key=lambda c: len(c.prefix)):
        out += [f"## `{cls.prefix}*`: {cls.name} {{#{cls.name.lower()}}}", "",
                f"{cls.doc} Source: `{cls.path}` (`{cls.module}.{cls.name}`).", "",
                "| variable | type | default | notes |", "|---|---|---|---|"]
        for s in cls.settings:
            out.append(f"| `{s.env}` | `{_cell(s.type)}` | `{_cell(s.default)}` | {_cell(s.comment)} |")
        out.append("")
    return "\n".join(out)
