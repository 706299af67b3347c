"""A table named with its schema: the history table, the audit table, a relation."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

__all__ = ["Table"]


@dataclass(frozen=True)
class Table:
    """A table named with its schema."""

    schema: str
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def regclass(self) -> str:
        """The quoted, qualified name, for to_regclass()."""
        return ".".join('"' + part.replace('"', '""') + '"' for part in (self.schema, self.name))

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"
