"""Reading a spec or recipe YAML file in bounded time and memory, whatever the file holds.

A spec is user input and may be hostile or just wrong: an endless file (``/dev/zero``), a directory,
Latin-1 bytes, a billion-laughs alias bomb, ten thousand nested brackets, a 5,000-digit integer, or a
key given twice. Each of these ends in one ``YamlInputError`` whose message says what was found and
what is allowed, never in a traceback or a multi-gigabyte error message:

- at most ``MAX_BYTES`` are read (one more byte tells a too-large file apart), and only regular files;
- the text must be UTF-8;
- nesting deeper than ``MAX_DEPTH`` is refused while the document is composed (PyYAML's composer
  recurses, so a deep document would otherwise end in a RecursionError);
- aliases may not expand to more than ``MAX_NODES`` nodes: the expanded size is counted on the node
  graph (shared nodes counted once per use, memoised) before anything is constructed;
- a key given twice in one mapping is an error (PyYAML keeps the last one silently); ``<<`` merges
  may still be overridden, as YAML intends.
"""
from __future__ import annotations

import os
import stat

import yaml

MAX_BYTES = 1 << 20      # 1 MiB: the largest shipped spec is under 4 KB
MAX_DEPTH = 32           # levels of nesting; a spec needs 4
MAX_NODES = 100_000      # scalars + collections after alias expansion; a full paper spec has ~300


class YamlInputError(ValueError):
    """The file cannot be used as YAML input. str() names the source and the reason; ``reason`` is the
    reason alone (for messages that already name the file)."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels; a spec needs only a few",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: SafeConstructor reports it
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shorten(key)} (first at line {first.line + 1}); each key may appear "
                        f"once (YAML would silently keep the last)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def shorten(value, limit: int = 60) -> str:
    """repr of a value cut to about `limit` characters, so a message stays one readable line."""
    import reprlib
    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 6
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit + 20 else text[:limit] + "..."


def expanded_size(node: yaml.Node, limit: int = MAX_NODES) -> int:
    """Nodes the document has once every alias is expanded (counting stops just past `limit`)."""
    memo: dict[int, int] = {}
    open_nodes: set[int] = set()   # a node inside itself (a recursive alias) expands without end

    def size(n) -> int:
        if id(n) in memo:
            return memo[id(n)]
        if id(n) in open_nodes:
            return limit + 1
        open_nodes.add(id(n))
        total = 1
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [c for pair in n.value for c in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_nodes.discard(id(n))
        memo[id(n)] = total
        return total

    # recursion depth is bounded by MAX_DEPTH, checked while composing
    return size(node)


def parse_yaml(text: str, source: str):
    """The YAML document in `text` (a str), bounded as the module docstring says."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes = expanded_size(node)
        if nodes > MAX_NODES:
            raise YamlInputError(source, f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?); "
                                 f"a spec needs a few hundred")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlInputError(source, f"not valid YAML: {_one_paragraph(exc)}") from None
    except RecursionError:
        raise YamlInputError(source, f"nesting too deep for YAML input") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        if isinstance(exc, YamlInputError):
            raise
        raise YamlInputError(source, f"a value cannot be read: {shorten(str(exc), 120)}") from None
    finally:
        loader.dispose()


def _one_paragraph(exc: BaseException) -> str:
    """'<problem> (line L, column C)' of a PyYAML error, without its multi-line source excerpt."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        context = getattr(exc, "context", None)
        text = f"{context + ': ' if context else ''}{problem} (line {mark.line + 1}, column {mark.column + 1})"
    else:
        text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + " ..."


def decode(data: bytes, source: str, max_bytes: int = MAX_BYTES) -> str:
    if len(data) > max_bytes:
        raise YamlInputError(source, f"larger than {max_bytes:,} bytes; a spec is a few KB of YAML")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlInputError(source, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                             f"save the file as UTF-8") from None


def read_bounded(path: str, max_bytes: int = MAX_BYTES, what: str = "file") -> bytes:
    """At most max_bytes + 1 bytes of a regular file; other kinds of path are a YamlInputError."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise YamlInputError(path, f"{what} not found: {os.path.abspath(path)}") from None
    except OSError as exc:
        raise YamlInputError(path, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise YamlInputError(path, f"is a directory; give the path of a YAML file")
    if not stat.S_ISREG(info.st_mode):
        raise YamlInputError(path, f"is not a regular file (a device, pipe or socket); give a YAML file")
    try:
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise YamlInputError(path, f"cannot read: {exc.strerror or exc}") from None


def read_yaml_file(path: str, max_bytes: int = MAX_BYTES, what: str = "file"):
    """The parsed YAML of a local file, every hostile case a YamlInputError."""
    return parse_yaml(decode(read_bounded(path, max_bytes, what), path, max_bytes), path)


def read_yaml_bytes(data: bytes, source: str, max_bytes: int = MAX_BYTES):
    """The parsed YAML of bytes read from a store (read at most max_bytes + 1 of them)."""
    return parse_yaml(decode(data, source, max_bytes), source)
