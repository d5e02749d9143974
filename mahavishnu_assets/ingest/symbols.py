"""Definitions in a parsed source file (functions, classes, methods, types), with qualified names and lines.

One tree-sitter query per language finds the definition nodes in C (in Python files a walk over the statements
that can hold one is faster still); nesting, names and kinds are then worked out from those few nodes only. Qualified names join the enclosing
definitions with dots (`QuerySet.filter`, `outer.inner`); Go methods are qualified by their receiver's type and
Rust functions by their `impl` block's type (`Router.handle`), so a query written either way finds them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

# Kinds a symbol can have.
FUNCTION, METHOD, CLASS, INTERFACE, TYPE, ENUM, STRUCT, TRAIT, MODULE, MACRO = (
    "function",
    "method",
    "class",
    "interface",
    "type",
    "enum",
    "struct",
    "trait",
    "module",
    "macro",
)
# Containers whose functions are methods.
_TYPE_KINDS = frozenset({CLASS, INTERFACE, STRUCT, TRAIT, ENUM, "impl"})

# language -> (grammar wheel module, function returning its language pointer)
GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}

_PYTHON = """
(function_definition name: (identifier) @name) @def
(class_definition name: (identifier) @name) @def
"""
_FUNCTION_VALUE = "[(arrow_function) (function_expression) (generator_function)]"
_JAVASCRIPT = f"""
(function_declaration name: (identifier) @name) @def
(generator_function_declaration name: (identifier) @name) @def
(class_declaration name: (_) @name) @def
(class name: (_) @name) @def
(method_definition name: (_) @name) @def
(variable_declarator name: (identifier) @name value: [{_FUNCTION_VALUE[1:-1]} (class)]) @def
(assignment_expression
  left: (member_expression property: (property_identifier) @name) right: {_FUNCTION_VALUE}) @def
(pair key: (property_identifier) @name value: {_FUNCTION_VALUE}) @def
"""
_JS_FIELD = f"(field_definition property: (property_identifier) @name value: {_FUNCTION_VALUE}) @def\n"
_TS_EXTRA = f"""
(abstract_class_declaration name: (type_identifier) @name) @def
(interface_declaration name: (type_identifier) @name) @def
(type_alias_declaration name: (type_identifier) @name) @def
(enum_declaration name: (identifier) @name) @def
(function_signature name: (identifier) @name) @def
(method_signature name: (_) @name) @def
(abstract_method_signature name: (_) @name) @def
(public_field_definition name: (property_identifier) @name value: {_FUNCTION_VALUE}) @def
(internal_module name: (identifier) @name) @def
"""
_GO = """
(function_declaration name: (identifier) @name) @def
(method_declaration name: (field_identifier) @name) @def
(type_spec name: (type_identifier) @name) @def
(type_alias name: (type_identifier) @name) @def
(method_elem name: (field_identifier) @name) @def
"""
_RUST = """
(function_item name: (identifier) @name) @def
(function_signature_item name: (identifier) @name) @def
(struct_item name: (type_identifier) @name) @def
(enum_item name: (type_identifier) @name) @def
(union_item name: (type_identifier) @name) @def
(trait_item name: (type_identifier) @name) @def
(type_item name: (type_identifier) @name) @def
(mod_item name: (identifier) @name) @def
(macro_definition name: (identifier) @name) @def
(impl_item type: (_) @name) @def
"""
QUERIES = {
    "python": _PYTHON,
    "javascript": _JAVASCRIPT + _JS_FIELD,
    "typescript": _JAVASCRIPT + _TS_EXTRA,
    "tsx": _JAVASCRIPT + _TS_EXTRA,
    "go": _GO,
    "rust": _RUST,
}

# Node type -> kind; None: decided from the context (functions vs methods, Go type specs).
_KINDS: dict[str, str | None] = {
    "function_definition": None,
    "class_definition": CLASS,
    "function_declaration": None,
    "generator_function_declaration": None,
    "class_declaration": CLASS,
    "class": CLASS,
    "abstract_class_declaration": CLASS,
    "method_definition": None,
    "variable_declarator": None,
    "assignment_expression": None,
    "pair": None,
    "field_definition": None,
    "public_field_definition": None,
    "interface_declaration": INTERFACE,
    "type_alias_declaration": TYPE,
    "enum_declaration": ENUM,
    "function_signature": None,
    "method_signature": METHOD,
    "abstract_method_signature": METHOD,
    "internal_module": MODULE,
    "method_declaration": METHOD,
    "type_spec": None,
    "type_alias": TYPE,
    "method_elem": METHOD,
    "function_item": None,
    "function_signature_item": None,
    "struct_item": STRUCT,
    "enum_item": ENUM,
    "union_item": STRUCT,
    "trait_item": TRAIT,
    "type_item": TYPE,
    "mod_item": MODULE,
    "macro_definition": MACRO,
    "impl_item": "impl",
}
# Where a definition's header ends and its body starts (the first field present).
_BODY_FIELDS = ("body", "value", "type")
# Lines directly above a definition that belong to it.
NOTE_TYPES = frozenset(
    {"comment", "line_comment", "block_comment", "decorator", "attribute_item", "inner_attribute_item"}
)
_ATTRIBUTE_TYPES = frozenset({"attribute_item", "decorator"})


@dataclass(frozen=True)
class Symbol:
    """A definition: its name, dotted qualified name, kind and lines (1-based, inclusive, decorators included)."""

    name: str
    qualified_name: str
    kind: str
    start_line: int
    end_line: int


@dataclass(frozen=True)
class Definition:
    """A symbol plus what chunking needs: where its notes (comments right above) start, its signature lines."""

    symbol: Symbol
    note_start: int  # first line of the comments and attributes right above it (else start_line)
    signature_start: int
    signature_end: int
    parent: int  # index of the enclosing definition in the file's list, -1 at module level


@cache
def language_object(language: str) -> Any:
    import importlib

    from tree_sitter import Language

    module, function = GRAMMARS[language]
    return Language(getattr(importlib.import_module(module), function)())


@cache
def _query(language: str) -> Any:
    from tree_sitter import Query

    return Query(language_object(language), QUERIES[language])


_local = threading.local()


def parse(source: bytes, language: str) -> Any:
    """The syntax tree of `source`; one parser per thread and language (parsers are not thread-safe)."""
    parsers: dict[str, Any] = getattr(_local, "parsers", None) or {}
    _local.parsers = parsers
    parser = parsers.get(language)
    if parser is None:
        from tree_sitter import Parser

        parser = parsers[language] = Parser(language_object(language))
    return parser.parse(source)


def warm(languages: tuple[str, ...] = tuple(GRAMMARS)) -> None:
    """Load the grammars and compile the queries now (a reader worker does it before its first file)."""
    for language in languages:
        _query(language)


def end_line(node: Any) -> int:
    """1-based last line of a node; a node ending with its newline (a Rust line comment) ends on that line."""
    row, column = node.end_point
    if column == 0 and row > node.start_point[0]:
        row -= 1
    return int(row) + 1


def _text(node: Any) -> str:
    return bytes(node.text or b"").decode("utf-8", "replace")


def _type_name(node: Any | None) -> str:
    """The bare name of a type expression: `*Router` -> Router, `Map<K, V>` -> Map, `fmt::Display` -> Display."""
    while node is not None:
        if node.type in ("type_identifier", "identifier", "field_identifier", "primitive_type"):
            return _text(node)
        inner = (
            node.child_by_field_name("type")
            or node.child_by_field_name("name")
            or next((c for c in node.named_children if c.type != "type_arguments"), None)
        )
        if inner is None:
            return _text(node)
        node = inner
    return ""


def _receiver(node: Any) -> str:
    """A Go method's receiver type name."""
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return ""
    for parameter in receiver.named_children:
        if parameter.type == "parameter_declaration":
            return _type_name(parameter.child_by_field_name("type"))
    return ""


def _kind(node: Any, parent_kind: str | None) -> str:
    base = _KINDS.get(node.type)
    if base is not None:
        return base
    if node.type == "type_spec":
        shape = node.child_by_field_name("type")
        shape_type = shape.type if shape is not None else ""
        return {"struct_type": STRUCT, "interface_type": INTERFACE}.get(shape_type, TYPE)
    value = node.child_by_field_name("value")
    if node.type == "variable_declarator" and value is not None and value.type == "class":
        return CLASS
    return METHOD if parent_kind in _TYPE_KINDS else FUNCTION


# Nodes that wrap a single definition and carry its first line (decorators, `export`, `const f = ...`).
_WRAPPERS = frozenset(
    {
        "decorated_definition",
        "export_statement",
        "ambient_declaration",
        "lexical_declaration",
        "variable_declaration",
        "expression_statement",
    }
)
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "generator_function", "class"})


def _outer(node: Any) -> Any:
    """The node whose lines a definition covers: with its decorators, `export`, `const ... =`."""
    while node.parent is not None and (
        node.parent.type in _WRAPPERS
        or node.parent.type == "type_declaration"
        and node.parent.named_child_count == 1
    ):
        node = node.parent
    return node


def _body(node: Any) -> Any | None:
    for name in _BODY_FIELDS:
        body = node.child_by_field_name(name)
        if body is not None:
            if body.type in _FUNCTION_VALUES:  # `f = (a) => {...}`: the function's own body
                return _body(body) or body
            return body
    return None


def _signature_rows(node: Any) -> tuple[int, int]:
    """0-based first and last rows of a definition's header: from its keyword to where its body opens."""
    start = node.start_point[0]
    body = _body(node)
    if body is None:
        return start, start
    before = body.prev_sibling  # the header's last token: `:`, `)`, a return type, `=`
    last = before.end_point[0] if before is not None else body.start_point[0]
    return start, max(start, last)


def _notes_above(node: Any) -> tuple[int, int]:
    """1-based first lines of the attributes, and of all the attributes and comments, right above `node`
    (adjacent: no blank line between); the node's own first line when there are none."""
    top = attributes = node.start_point[0] + 1
    only_attributes = True
    previous = node.prev_named_sibling
    while previous is not None and previous.type in NOTE_TYPES and end_line(previous) >= top - 1:
        top = previous.start_point[0] + 1
        if only_attributes and previous.type in _ATTRIBUTE_TYPES:
            attributes = top
        else:
            only_attributes = False
        previous = previous.prev_named_sibling
    return attributes, top


# Python nodes that may hold definitions: a def or class is a statement, so only statements with bodies need
# opening (expressions never hold one). Walking just these visits a fraction of the tree: about a third of the
# time of running the query over all of it.
_PYTHON_DEFINITIONS = frozenset({"function_definition", "class_definition"})
_PYTHON_HOLDERS = frozenset(
    {
        "module",
        "block",
        "decorated_definition",
        "function_definition",
        "class_definition",
        "if_statement",
        "elif_clause",
        "else_clause",
        "for_statement",
        "while_statement",
        "try_statement",
        "except_clause",
        "except_group_clause",
        "finally_clause",
        "with_statement",
        "match_statement",
        "case_clause",
        "ERROR",
    }
)


def _python_candidates(root: Any) -> list[tuple[Any, Any]]:
    found: list[tuple[Any, Any]] = []
    stack = [root]
    while stack:
        for child in stack.pop().named_children:
            kind = child.type
            if kind in _PYTHON_DEFINITIONS:
                name = child.child_by_field_name("name")
                if name is not None and name.type == "identifier":
                    found.append((child, name))
            if kind in _PYTHON_HOLDERS:
                stack.append(child)
    return found


def _query_candidates(root: Any, language: str) -> list[tuple[Any, Any]]:
    from tree_sitter import QueryCursor

    found: list[tuple[Any, Any]] = []
    for _, captures in QueryCursor(_query(language)).matches(root):
        nodes, names = captures.get("def"), captures.get("name")
        if nodes and names:
            found.append((nodes[0], names[0]))
    return found


def definitions(tree: Any, language: str) -> list[Definition]:
    """Every definition of the file, in source order (an enclosing definition before what it holds)."""
    if language == "python":
        found = _python_candidates(tree.root_node)
    else:
        found = _query_candidates(tree.root_node, language)
    found.sort(key=lambda pair: (pair[0].start_byte, -pair[0].end_byte))
    out: list[Definition] = []
    stack: list[tuple[int, int, str, str]] = []  # (end byte, index in out or -1, qualified name, kind)
    seen: set[int] = set()
    for node, name_node in found:
        if node.id in seen:
            continue
        seen.add(node.id)
        while stack and stack[-1][0] <= node.start_byte:
            stack.pop()
        parent_index, parent_name, parent_kind = (
            (stack[-1][1], stack[-1][2], stack[-1][3]) if stack else (-1, "", None)
        )
        kind = _kind(node, parent_kind)
        if node.type == "impl_item":
            # A container only: its functions are qualified by the type it implements.
            stack.append((node.end_byte, parent_index, _type_name(name_node), "impl"))
            continue
        name = _text(name_node)
        if not name or "\n" in name:
            continue
        if node.type == "method_declaration":
            receiver = _receiver(node)
            qualified = f"{receiver}.{name}" if receiver else name
        else:
            qualified = f"{parent_name}.{name}" if parent_name else name
        outer = _outer(node)
        first_attribute, first_note = _notes_above(outer)
        signature = _signature_rows(node)
        out.append(
            Definition(
                Symbol(name, qualified, kind, first_attribute, end_line(outer)),
                note_start=first_note,
                signature_start=signature[0] + 1,
                signature_end=signature[1] + 1,
                parent=parent_index,
            )
        )
        stack.append((node.end_byte, len(out) - 1, qualified, kind))
    return out
