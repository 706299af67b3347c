"""`.env` files found as Prisma finds them, layered as predeploy layers them.

Layers, lowest first: the Prisma schema folder's `.env` (or `prisma/.env`), then
`.env` beside package.json (the project root), then `.env.<env>`, then the process
environment, which wins. Between the two `.env` files the root one wins, as in
Prisma; Prisma reads only the first of `<schema folder>/.env`, `prisma/.env` and
`./.env`, and none of them when a Prisma config file exists (it imports dotenv
itself, which reads the root `.env`), so neither does predeploy.

``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$VAR`` in a file's
values refer to the variable's final value across every layer (a reference to
the variable being defined refers to the layers below). ``\\$`` is a literal
``$``, single-quoted values are taken as written, and a reference to an unset
variable is an error naming both, never an empty string. Values are resolved
only when read, so an app's variable predeploy never reads cannot fail a run.

A line that is not ``NAME=value`` (a bare ``NAME``, an unclosed quote) is an error
naming the file and the line: Node's dotenv (Prisma's) skips it without a word and
python-dotenv reads a bare ``NAME`` as unset, so either reading could be the wrong
one; the line's text is never repeated, as it may be a pasted secret.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import Original, parse_stream

from predeploy._util.files import read_text
from predeploy.errors import ConfigError

__all__ = ["Definition", "EnvLayers", "find_env_files", "load_layers"]

ENVIRONMENT = "the environment"
_REFERENCE = re.compile(
    r"\\\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


@dataclass(frozen=True)
class Definition:
    """One variable as one layer defines it."""

    value: str
    source: str  # ".env", ".env.staging", "prisma/.env" or "the environment"
    expand: bool  # False for the environment and single-quoted values


@dataclass(frozen=True)
class EnvLayers:
    """Every layer's variables, lowest first; values are resolved when read."""

    layers: tuple[Mapping[str, Definition], ...]
    files: tuple[Path, ...]
    labels: tuple[str, ...]  # each file as an operator names it: ".env", "prisma/.env"
    warnings: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # files not read because a Prisma config file exists

    def names(self) -> frozenset[str]:
        """Every variable any layer defines."""
        return frozenset(name for layer in self.layers for name in layer)

    def get(self, name: str) -> str | None:
        """The resolved value of ``name``; None when unset or empty."""
        return self._resolve(name, len(self.layers), frozenset(), None) or None

    def source(self, name: str) -> str | None:
        """Where the winning value of ``name`` comes from."""
        found = self._top(name, len(self.layers))
        return None if found is None else found[1].source

    def _top(self, name: str, below: int) -> tuple[int, Definition] | None:
        for index in range(below - 1, -1, -1):
            if name in self.layers[index]:
                return index, self.layers[index][name]
        return None

    def _resolve(
        self, name: str, below: int, seen: frozenset[tuple[str, int]], referrer: str | None
    ) -> str | None:
        found = self._top(name, below)
        if found is None:
            return None
        index, definition = found
        if (name, index) in seen:
            raise ConfigError(
                f"{name} in {definition.source} refers to itself through {referrer}: "
                f"break the cycle of ${{...}} references"
            )
        if not definition.expand:
            return definition.value
        return self._expand(name, index, definition, seen | {(name, index)})

    def _expand(
        self, name: str, index: int, definition: Definition, seen: frozenset[tuple[str, int]]
    ) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "\\$":
                return "$"
            ref = match.group("braced") or match.group("bare")
            below = index if ref == name else len(self.layers)
            value = self._resolve(ref, below, seen, name)
            op = match.group("op")
            if op is not None and (value is None or (op == ":-" and value == "")):
                fallback = Definition(match.group("default"), definition.source, expand=True)
                return self._expand(name, index, fallback, seen)
            if value is None:
                raise ConfigError(self._unset(name, definition.source, ref))
            return value

        return _REFERENCE.sub(replace, definition.value)

    def _unset(self, name: str, source: str, ref: str) -> str:
        read = ", ".join([*self.labels, ENVIRONMENT])
        return (
            f"{name} in {source} refers to ${{{ref}}}, which is not set (read: {read}): "
            f"define {ref}, or write \\$ for a literal $"
        )


def find_env_files(
    root: Path, env: str, *, schema_dir: Path | None, has_prisma_config: bool
) -> tuple[Path, ...]:
    """The `.env` files of ``env`` that exist, lowest precedence first."""
    files: list[Path] = []
    root_env = root / ".env"
    if not has_prisma_config:
        candidates = [*([schema_dir / ".env"] if schema_dir else []), root / "prisma" / ".env"]
        first = next((p for p in [*candidates, root_env] if p.is_file()), None)
        if first is not None and first.resolve() != root_env.resolve():
            files.append(first)
    files += [p for p in (root_env, root / f".env.{env}") if p.is_file()]
    return tuple(files)


def load_layers(
    files: Sequence[Path],
    root: Path,
    environ: Mapping[str, str],
    skipped: Sequence[Path] = (),
) -> EnvLayers:
    """Read ``files`` (lowest first) and the process environment ``environ`` into layers;
    ``skipped`` are the files a Prisma config file keeps from being read (for messages)."""
    layers: list[Mapping[str, Definition]] = []
    warnings: list[str] = []
    labels = tuple(_label(path, root) for path in files)
    for path, label in zip(files, labels, strict=True):
        layer, problems = _read_file(path, label)
        layers.append(layer)
        warnings += problems
    process = {k: Definition(v, ENVIRONMENT, expand=False) for k, v in environ.items() if v != ""}
    layers.append(process)
    unread = tuple(_label(path, root) for path in skipped)
    return EnvLayers(tuple(layers), tuple(files), labels, tuple(warnings), unread)


def _read_file(path: Path, label: str) -> tuple[dict[str, Definition], list[str]]:
    text = read_text(path, shown=label, advice=": fix or remove it")
    layer: dict[str, Definition] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error or (binding.key is not None and binding.value is None):
            raise ConfigError(_not_a_binding(label, binding.original, binding.error))
        if binding.key is not None and binding.value is not None:
            quoted = _single_quoted(binding.original.string, binding.key)
            layer[binding.key] = Definition(binding.value, label, expand=not quoted)
    return layer, []


def _not_a_binding(label: str, original: Original, error: bool) -> str:
    """A line that is not NAME=value: an error, never skipped (its text may be a secret)."""
    text = original.string
    stripped = text.lstrip()
    line = original.line + text[: len(text) - len(stripped)].count("\n")
    what = "cannot be read as NAME=value (a quote left open?)" if error else "has no ="
    return (
        f"{label} line {line} {what}: write NAME=value (NAME= for an empty value), "
        f"or start the line with # to make it a comment"
    )


def _single_quoted(line: str, key: str) -> bool:
    pattern = rf"^\s*(?:export\s+)?{re.escape(key)}\s*=\s*'"
    return re.match(pattern, line) is not None


def _label(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
