"""Prisma's own configuration, read as ours: which file is the schema, which variables.

The schema is found as Prisma 6.19 finds it without ``--schema`` (FIELD-NOTES
"Schema lookup"): the Prisma config file's ``schema``, then package.json's
``"prisma": {"schema": ...}``, then ``./schema.prisma``, ``./prisma/schema.prisma``
and the folder ``./prisma/schema/``. Its ``datasource`` block names the variables:
``url = env("X")``, ``directUrl = env("Y")``, ``shadowDatabaseUrl = env("Z")``.
Prisma 7 moved them to ``prisma.config.ts``: ``datasource: { url: env("X") }``
(or ``process.env.X``, or ``process.env.A ?? process.env.B``, the first that is set) is
read; any other expression is reported as unreadable.
Nothing is evaluated: the files are read as text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from predeploy._util.files import read_text
from predeploy.errors import ConfigError

__all__ = ["CONFIG_NAMES", "PrismaProject", "UrlSource", "discover"]

_EXTENSIONS = ("ts", "mts", "cts", "js", "mjs", "cjs")
CONFIG_NAMES = (
    *(f"prisma.config.{ext}" for ext in _EXTENSIONS),
    *(f".config/prisma.{ext}" for ext in _EXTENSIONS),
)
_POSTGRES = ("postgresql", "postgres")
_SCHEMA_TEXT = re.compile(r'("(?:\\.|[^"\\\n])*")|//[^\n]*')
_TS_COMMENTS = re.compile(
    r"""("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`[^`]*`)|//[^\n]*|/\*.*?\*/""", re.S
)
_DATASOURCE = re.compile(r"^\s*datasource\s+\w+\s*\{(?P<body>[^}]*)\}", re.M)
_FIELD = re.compile(r"^\s*(?P<key>\w+)\s*=\s*(?P<value>.+?)\s*$", re.M)
_SCHEMA_ENV = re.compile(r'env\(\s*"(?P<name>[^"]+)"\s*\)')
_STRING = r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|`(?P<bq>[^`$]*)`)"""
_TS_ENV = re.compile(
    r"""(?:env\s*(?:<[^>]*>)?\(\s*["'`](?P<a>\w+)["'`]\s*\)"""
    r"""|process\.env\.(?P<b>\w+)|process\.env\[\s*["'](?P<c>\w+)["']\s*\])"""
    r"""\s*!?(?:\s+as\s+string)?"""
)


@dataclass(frozen=True)
class UrlSource:
    """Where a datasource URL comes from: a variable, or a URL written in the file."""

    where: str  # e.g. "prisma/schema.prisma's directUrl", for messages
    variable: str | None = None
    literal: str | None = None  # with a variable: the value when no variable is set
    fallbacks: tuple[str, ...] = ()  # `process.env.A ?? process.env.B`: read in order

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables that may hold the URL, the first that is set winning."""
        return (self.variable, *self.fallbacks) if self.variable else self.fallbacks


@dataclass(frozen=True)
class PrismaProject:
    """What Prisma's files say about the database; every part may be missing."""

    config_file: Path | None = None
    schema: Path | None = None  # the schema file, or folder of .prisma files
    datasource_file: Path | None = None
    url: UrlSource | None = None
    direct_url: UrlSource | None = None
    shadow_url: UrlSource | None = None
    config_url: UrlSource | None = None  # Prisma 7: the config's datasource.url (the CLI's)
    migrations_dir: Path | None = None  # the config's migrations.path
    unreadable: str | None = None  # a config datasource URL that is not env("X")
    warnings: tuple[str, ...] = ()

    @property
    def schema_dir(self) -> Path | None:
        """The schema's folder: where Prisma keeps migrations/ and reads sslcert from."""
        if self.datasource_file is not None:
            return self.datasource_file.parent
        if self.schema is not None:
            return self.schema if self.schema.is_dir() else self.schema.parent
        return None


def discover(root: Path) -> PrismaProject:
    """Read the Prisma config file and schema of the project at ``root``."""
    config = next((root / n for n in CONFIG_NAMES if (root / n).is_file()), None)
    config_text = _ts_text(config) if config is not None else ""
    schema = _find_schema(root, config, config_text)
    found = _read_schema(root, schema) if schema is not None else PrismaProject()
    project = PrismaProject(
        config_file=config,
        schema=schema,
        datasource_file=found.datasource_file,
        url=found.url,
        direct_url=found.direct_url,
        shadow_url=found.shadow_url,
        warnings=found.warnings,
    )
    if config is not None:
        project = _merge_config(root, project, config, config_text)
    return project


def _find_schema(root: Path, config: Path | None, config_text: str) -> Path | None:
    if config is not None:
        named = _ts_path(_ts_value(config_text, r"\bschema"), config.parent)
        if named is not None:
            return _existing(named, f"{_rel(config, root)}'s schema", root)
    package = root / "package.json"
    if package.is_file():
        named_text = _package_schema(package)
        if named_text is not None:
            return _existing(root / named_text, "package.json's prisma.schema", root)
    for candidate in (root / "schema.prisma", root / "prisma" / "schema.prisma"):
        if candidate.is_file():
            return candidate
    folder = root / "prisma" / "schema"
    return folder if folder.is_dir() and any(folder.rglob("*.prisma")) else None


def _existing(path: Path, what: str, root: Path) -> Path:
    if not path.exists():
        raise ConfigError(f"{what} names {_rel(path, root)}, which does not exist: fix the path")
    return path


def _package_schema(package: Path) -> str | None:
    text = read_text(package, shown=package.name, advice=": fix it")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"cannot read {package.name}: {exc}: fix it") from None
    prisma = data.get("prisma") if isinstance(data, dict) else None
    schema = prisma.get("schema") if isinstance(prisma, dict) else None
    return schema if isinstance(schema, str) and schema else None


def _read_schema(root: Path, schema: Path) -> PrismaProject:
    files = sorted(schema.rglob("*.prisma")) if schema.is_dir() else [schema]
    for path in files:
        text = _SCHEMA_TEXT.sub(lambda m: m.group(1) or "", _read(path))
        block = _DATASOURCE.search(text)
        if block is not None:
            return _datasource(root, path, block.group("body"))
    return PrismaProject(warnings=(f"{_rel(schema, root)} has no datasource block",))


def _datasource(root: Path, path: Path, body: str) -> PrismaProject:
    fields = {m.group("key"): m.group("value") for m in _FIELD.finditer(body)}
    name = _rel(path, root)
    provider = fields.get("provider", '"postgresql"').strip('"')
    if provider not in _POSTGRES:
        raise ConfigError(
            f"{name}'s datasource has provider {provider!r}: predeploy works with "
            f'PostgreSQL only (provider = "postgresql")'
        )
    warnings: list[str] = []
    sources = {
        key: _schema_source(f"{name}'s {key}", fields.get(key), warnings)
        for key in ("url", "directUrl", "shadowDatabaseUrl")
    }
    return PrismaProject(
        datasource_file=path,
        url=sources["url"],
        direct_url=sources["directUrl"],
        shadow_url=sources["shadowDatabaseUrl"],
        warnings=tuple(warnings),
    )


def _schema_source(where: str, value: str | None, warnings: list[str]) -> UrlSource | None:
    if value is None:
        return None
    env = _SCHEMA_ENV.fullmatch(value)
    if env is not None:
        return UrlSource(where, variable=env.group("name"))
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        warnings.append(
            f"{where} is a URL written in the schema file: predeploy uses it, but a "
            f'secret belongs in a variable (url = env("DATABASE_URL"))'
        )
        return UrlSource(where, literal=value[1:-1])
    raise ConfigError(f'{where} is neither env("NAME") nor a "URL": write one of them')


def _merge_config(root: Path, project: PrismaProject, config: Path, text: str) -> PrismaProject:
    """Prisma 7: the config's datasource.url and shadowDatabaseUrl; migrations.path."""
    name = _rel(config, root)
    migrations = _ts_path(_ts_value(text, r"\bmigrations\s*:\s*\{[^}]*?\bpath"), config.parent)
    project = dataclasses.replace(project, migrations_dir=migrations)
    datasource = re.search(r"\bdatasource\s*:\s*\{(?P<body>[^}]*)\}", text)
    if datasource is None:
        return project
    found: dict[str, UrlSource] = {}
    unreadable = None
    for key in ("url", "shadowDatabaseUrl"):
        expr = _ts_value(datasource.group("body"), rf"\b{key}")
        if expr is None:
            continue
        source = _ts_source(f"{name}'s datasource.{key}", expr)
        if source is None:
            unreadable = unreadable or f"{name}'s datasource.{key}"
        else:
            found[key] = source
    return dataclasses.replace(
        project,
        config_url=found.get("url"),
        shadow_url=found.get("shadowDatabaseUrl", project.shadow_url),
        unreadable=unreadable,
    )


def _ts_source(where: str, expr: str) -> UrlSource | None:
    """``env("X")``, ``process.env.X``, a string, or ``A ?? B ?? "..."`` (or ``||``) of
    them: the first variable that is set, else the string at the end."""
    names: list[str] = []
    parts = [part.strip() for part in re.split(r"\?\?|\|\|", expr)]
    for index, part in enumerate(parts):
        env = _TS_ENV.fullmatch(part)
        if env is not None:
            names.append(env.group("a") or env.group("b") or env.group("c"))
            continue
        literal = re.fullmatch(_STRING, part)
        if literal is None or index != len(parts) - 1:
            return None
        text = next(g for g in literal.groups() if g is not None)
        return UrlSource(where, names[0] if names else None, text, tuple(names[1:]))
    return UrlSource(where, variable=names[0], fallbacks=tuple(names[1:]))


def _ts_value(text: str, key: str) -> str | None:
    """The expression after ``key:`` up to the next comma, newline or brace (a line may
    end with ``??`` or ``||``: the expression goes on)."""
    match = re.search(
        rf"{key}\s*:\s*(?P<expr>(?:[\w.]+\([^)]*\)|(?:\?\?|\|\|)\s*|[^,\n}}])+)", text
    )
    return match.group("expr").strip() if match else None


def _ts_path(expr: str | None, base: Path) -> Path | None:
    """A path expression: a string, or path.join/resolve of strings and the config's folder."""
    if expr is None:
        return None
    literal = re.fullmatch(_STRING, expr)
    if literal is not None:
        return base / next(g for g in literal.groups() if g is not None)
    call = re.fullmatch(r"(?:path\.)?(?:join|resolve)\((?P<args>[^)]*)\)", expr)
    if call is None:
        return None
    parts: list[str] = []
    for arg in (a.strip() for a in call.group("args").split(",") if a.strip()):
        part = re.fullmatch(_STRING, arg)
        if part is not None:
            parts.append(next(g for g in part.groups() if g is not None))
        elif arg not in ("__dirname", "import.meta.dirname", "process.cwd()") or parts:
            return None
    return base.joinpath(*parts) if parts else None


def _ts_text(path: Path) -> str:
    return _TS_COMMENTS.sub(lambda m: m.group(1) or "", _read(path))


def _read(path: Path) -> str:
    return read_text(path, advice=": fix or remove it")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
