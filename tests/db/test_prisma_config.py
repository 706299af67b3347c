"""Prisma's configuration as ours: schema lookup, datasource variables, .env files, the root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predeploy.config.project import find_root
from predeploy.config.settings import Settings, load_settings
from predeploy.errors import ConfigError

POOLED = "postgresql://app:pooledpw@pooler.example.com:6543/app?pgbouncer=true&connection_limit=1"
DIRECT = "postgresql://app:directpw@db.example.com:5432/app?schema=public"

SCHEMA = """\
// url = env("NOT_THIS")
generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider  = "postgresql"
  url       = env("%s") // the pooled one
  directUrl = env("%s")
}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def app(tmp_path: Path, url_var: str = "DATABASE_URL", direct_var: str = "DIRECT_URL") -> Path:
    """A Prisma app as `prisma init` makes it, with a directUrl."""
    write(tmp_path / "package.json", json.dumps({"name": "web"}))
    write(tmp_path / "prisma" / "schema.prisma", SCHEMA % (url_var, direct_var))
    return tmp_path


def staging(root: Path, environ: dict[str, str] | None = None) -> Settings:
    return load_settings("staging", root, environ or {})


def test_schema_prisma_names_the_url_and_the_direct_url(tmp_path: Path) -> None:
    """schema.prisma's url = env("X") and directUrl = env("Y") name the variables read."""
    root = app(tmp_path)
    settings = staging(root, {"DATABASE_URL": POOLED, "DIRECT_URL": DIRECT})
    assert settings.database_url_var == "DATABASE_URL"
    assert settings.direct_database_url_var == "DIRECT_URL"
    assert settings.migration_url is not None
    assert settings.migration_url.host == "db.example.com"
    assert settings.migration_url.schema == "public"
    assert settings.migration_url_var == "DIRECT_URL"
    assert settings.prisma_schema == root / "prisma" / "schema.prisma"
    assert settings.migrations_dir == root / "prisma" / "migrations"
    assert {"pooledpw", "directpw"} <= set(settings.secrets())


def test_pooler_url_as_migration_url_is_warned(tmp_path: Path) -> None:
    """pgbouncer=true on the URL migrations would use says to give the direct URL."""
    settings = staging(tmp_path, {"DATABASE_URL": POOLED})
    assert any("pgbouncer=true" in w and "direct" in w for w in settings.warnings)
    assert not any(
        "pgbouncer" in w
        for w in staging(app(tmp_path), {"DATABASE_URL": POOLED, "DIRECT_URL": DIRECT}).warnings
    )


def test_unset_direct_url_is_an_error_naming_it(tmp_path: Path) -> None:
    """directUrl = env("DIRECT_URL") with DIRECT_URL unset is exit 2 (Prisma's P1012)."""
    root = app(tmp_path)
    with pytest.raises(ConfigError, match=r"DIRECT_URL is not set.*schema\.prisma's directUrl"):
        staging(root, {"DATABASE_URL": POOLED})


def test_unset_url_named_by_the_schema_is_named(tmp_path: Path) -> None:
    """The error names the schema's variable, not a generic DATABASE_URL."""
    root = app(tmp_path, url_var="POSTGRES_PRISMA_URL", direct_var="POSTGRES_URL_NON_POOLING")
    with pytest.raises(ConfigError, match=r"^POSTGRES_PRISMA_URL is not set for env 'staging'"):
        staging(root, {"POSTGRES_URL_NON_POOLING": DIRECT})


def test_package_json_names_the_schema_and_its_migrations(tmp_path: Path) -> None:
    """package.json's prisma.schema is the schema; migrations live beside it."""
    write(tmp_path / "package.json", json.dumps({"prisma": {"schema": "db/main.prisma"}}))
    write(tmp_path / "db" / "main.prisma", SCHEMA % ("PG_URL", "PG_DIRECT"))
    write(tmp_path / "prisma" / "schema.prisma", SCHEMA % ("WRONG", "WRONG"))
    settings = staging(tmp_path, {"PG_URL": POOLED, "PG_DIRECT": DIRECT})
    assert settings.direct_database_url_var == "PG_DIRECT"
    assert settings.migrations_dir == tmp_path / "db" / "migrations"


def test_package_json_naming_a_missing_schema_is_an_error(tmp_path: Path) -> None:
    """A schema path that does not exist is exit 2 naming it."""
    write(tmp_path / "package.json", json.dumps({"prisma": {"schema": "db/nope.prisma"}}))
    with pytest.raises(ConfigError, match=r"package\.json's prisma\.schema names db/nope\.prisma"):
        staging(tmp_path, {"DATABASE_URL": POOLED})


@pytest.mark.parametrize(
    "expression",
    ['"custom/app.prisma"', "'custom/app.prisma'", 'path.join("custom", "app.prisma")'],
)
def test_prisma6_config_file_names_the_schema_first(tmp_path: Path, expression: str) -> None:
    """prisma.config.ts's schema wins over package.json and the default places."""
    write(tmp_path / "package.json", json.dumps({"prisma": {"schema": "other.prisma"}}))
    write(tmp_path / "other.prisma", SCHEMA % ("WRONG", "WRONG"))
    write(tmp_path / "custom" / "app.prisma", SCHEMA % ("DATABASE_URL", "DIRECT_URL"))
    write(
        tmp_path / "prisma.config.ts",
        'import path from "node:path";\nimport { defineConfig } from "prisma/config";\n'
        f"// schema: 'commented/out.prisma',\nexport default defineConfig({{\n"
        f"  schema: {expression},\n}});\n",
    )
    settings = staging(tmp_path, {"DATABASE_URL": POOLED, "DIRECT_URL": DIRECT})
    assert settings.prisma_schema == tmp_path / "custom" / "app.prisma"
    assert settings.prisma_config == tmp_path / "prisma.config.ts"
    assert settings.direct_database_url_var == "DIRECT_URL"


PRISMA7_CONFIG = """\
import "dotenv/config";
import { defineConfig, env } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations", seed: "tsx prisma/seed.ts" },
  datasource: {
    url: %s,
  },
});
"""
PRISMA7_SCHEMA = 'datasource db {\n  provider = "postgresql"\n}\n'


@pytest.mark.parametrize(
    "expression", ['env("MIGRATE_URL")', "env('MIGRATE_URL')", "process.env.MIGRATE_URL!"]
)
def test_prisma7_config_datasource_url_is_the_direct_url(tmp_path: Path, expression: str) -> None:
    """Prisma 7's datasource.url (what its CLI migrates with) is the direct URL."""
    write(tmp_path / "prisma.config.ts", PRISMA7_CONFIG % expression)
    write(tmp_path / "prisma" / "schema.prisma", PRISMA7_SCHEMA)
    settings = staging(tmp_path, {"MIGRATE_URL": DIRECT})
    assert settings.direct_database_url_var == "MIGRATE_URL"
    assert settings.database_url is not None  # without DATABASE_URL, the direct URL serves
    assert settings.database_url.host == "db.example.com"
    assert settings.migrations_dir == tmp_path / "prisma" / "migrations"


def test_prisma7_config_in_another_form_asks_for_the_variable(tmp_path: Path) -> None:
    """A datasource.url predeploy cannot read asks for PREDEPLOY_DIRECT_URL_VAR; that works."""
    write(tmp_path / "prisma.config.ts", PRISMA7_CONFIG % "buildUrl(process.env)")
    write(tmp_path / "prisma" / "schema.prisma", PRISMA7_SCHEMA)
    with pytest.raises(ConfigError, match="set PREDEPLOY_DIRECT_URL_VAR") as err:
        staging(tmp_path, {"MIGRATE_URL": DIRECT})
    assert "prisma.config.ts's datasource.url" in err.value.message
    settings = staging(tmp_path, {"MIGRATE_URL": DIRECT, "PREDEPLOY_DIRECT_URL_VAR": "MIGRATE_URL"})
    assert settings.direct_database_url_var == "MIGRATE_URL"


@pytest.mark.parametrize("op", ["??", "||"])
@pytest.mark.parametrize(
    ("environ", "chosen"),
    [
        ({"DIRECT_DATABASE_URL": DIRECT, "DATABASE_URL": POOLED}, "DIRECT_DATABASE_URL"),
        ({"DATABASE_URL": DIRECT}, "DATABASE_URL"),
        ({"DIRECT_DATABASE_URL": "", "DATABASE_URL": DIRECT}, "DATABASE_URL"),
    ],
)
def test_prisma7_config_url_chain_is_the_first_variable_set(
    tmp_path: Path, op: str, environ: dict[str, str], chosen: str
) -> None:
    """`url: process.env.A ?? process.env.B` (or ||, or over two lines) is the first set."""
    expression = f"process.env.DIRECT_DATABASE_URL {op}\n      env('DATABASE_URL')"
    write(tmp_path / "prisma.config.ts", PRISMA7_CONFIG % expression)
    write(tmp_path / "prisma" / "schema.prisma", PRISMA7_SCHEMA)
    settings = staging(tmp_path, environ)
    assert settings.direct_database_url_var == chosen
    assert settings.migration_url is not None
    assert settings.migration_url.host == "db.example.com"


def test_prisma7_config_url_chain_unset_names_every_variable(tmp_path: Path) -> None:
    """Neither variable of the chain set: the error names both (and a literal at the end
    of the chain is the URL then)."""
    chain = "process.env.DIRECT_DATABASE_URL ?? process.env.DATABASE_URL"
    write(tmp_path / "prisma.config.ts", PRISMA7_CONFIG % chain)
    write(tmp_path / "prisma" / "schema.prisma", PRISMA7_SCHEMA)
    with pytest.raises(ConfigError, match="none of DIRECT_DATABASE_URL, DATABASE_URL is set"):
        staging(tmp_path, {})
    write(tmp_path / "prisma.config.ts", PRISMA7_CONFIG % f'{chain} ?? "{DIRECT}"')
    settings = staging(tmp_path, {})
    assert settings.migration_url is not None
    assert settings.migration_url.host == "db.example.com"


def test_prisma7_config_url_wins_and_the_schemas_variables_are_not_demanded(
    tmp_path: Path,
) -> None:
    """A schema still naming url and directUrl beside a config datasource.url: the config's
    URL is what migrations use (as in Prisma 7), and the schema's unset variables are not
    demanded."""
    root = app(tmp_path)  # url = env("DATABASE_URL"), directUrl = env("DIRECT_URL")
    write(root / "prisma.config.ts", PRISMA7_CONFIG % 'env("MIGRATE_URL")')
    settings = staging(root, {"MIGRATE_URL": DIRECT})
    assert settings.migration_url_var == "MIGRATE_URL"
    settings = staging(root, {"MIGRATE_URL": DIRECT, "DIRECT_URL": POOLED, "DATABASE_URL": POOLED})
    assert settings.migration_url_var == "MIGRATE_URL"
    assert settings.database_url_var == "DATABASE_URL"  # the app's URL, when set


def test_prisma7_unset_url_says_prisma_env_was_not_read(tmp_path: Path) -> None:
    """The variable is in prisma/.env, which a config file keeps from being read: the
    error says so, and where to move it."""
    write(tmp_path / "prisma.config.ts", PRISMA7_CONFIG % 'env("MIGRATE_URL")')
    write(tmp_path / "prisma" / "schema.prisma", PRISMA7_SCHEMA)
    write(tmp_path / "prisma" / ".env", f"MIGRATE_URL={DIRECT}\n")
    with pytest.raises(ConfigError) as err:
        staging(tmp_path, {})
    assert (
        "not read: prisma/.env, because prisma.config.ts exists" in err.value.message
        and "move the variable to .env or .env.staging" in err.value.message
    )
    (tmp_path / "prisma" / ".env").unlink()
    with pytest.raises(ConfigError) as err:
        staging(tmp_path, {})
    assert "not read" not in err.value.message


def test_literal_url_in_the_schema_is_used_with_a_warning(tmp_path: Path) -> None:
    """url = "postgresql://..." in the schema is that URL, with a warning about secrets."""
    write(
        tmp_path / "prisma" / "schema.prisma",
        f'datasource db {{\n  provider = "postgresql"\n  url = "{DIRECT}"\n}}\n',
    )
    settings = staging(tmp_path)
    assert settings.database_url is not None
    assert settings.database_url.host == "db.example.com"
    assert any("written in the schema file" in w for w in settings.warnings)
    assert "directpw" in settings.secrets()


def test_folder_schema_is_read(tmp_path: Path) -> None:
    """A multi-file schema in prisma/schema/ is read for its datasource."""
    write(tmp_path / "prisma" / "schema" / "models.prisma", "model User {\n  id Int @id\n}\n")
    write(tmp_path / "prisma" / "schema" / "main.prisma", SCHEMA % ("DATABASE_URL", "DIRECT_URL"))
    settings = staging(tmp_path, {"DATABASE_URL": POOLED, "DIRECT_URL": DIRECT})
    assert settings.direct_database_url_var == "DIRECT_URL"
    assert settings.migrations_dir == tmp_path / "prisma" / "schema" / "migrations"


def test_other_providers_are_refused(tmp_path: Path) -> None:
    """A MySQL datasource is exit 2: predeploy is for PostgreSQL."""
    write(tmp_path / "schema.prisma", 'datasource db {\n  provider = "mysql"\n  url = env("X")\n}')
    with pytest.raises(ConfigError, match="PostgreSQL only"):
        staging(tmp_path, {"X": DIRECT})


@pytest.mark.parametrize("direct_var", ["DIRECT_URL", "DIRECT_DATABASE_URL"])
def test_without_a_schema_the_conventional_names_are_read(tmp_path: Path, direct_var: str) -> None:
    """No schema file: DIRECT_URL or DIRECT_DATABASE_URL is the direct URL."""
    settings = staging(tmp_path, {"DATABASE_URL": POOLED, direct_var: DIRECT})
    assert settings.direct_database_url_var == direct_var
    assert settings.migration_url is not None
    assert settings.migration_url.host == "db.example.com"


def test_url_variables_can_be_named_explicitly(tmp_path: Path) -> None:
    """PREDEPLOY_URL_VAR and PREDEPLOY_DIRECT_URL_VAR name the variables, over the schema."""
    root = app(tmp_path)
    settings = staging(
        root,
        {
            "PREDEPLOY_URL_VAR": "POSTGRES_URL",
            "PREDEPLOY_DIRECT_URL_VAR": "DATABASE_URL_UNPOOLED",
            "POSTGRES_URL": POOLED,
            "DATABASE_URL_UNPOOLED": DIRECT,
        },
    )
    assert (settings.database_url_var, settings.direct_database_url_var) == (
        "POSTGRES_URL",
        "DATABASE_URL_UNPOOLED",
    )
    with pytest.raises(ConfigError, match="PREDEPLOY_URL_VAR='not a name'"):
        staging(root, {"PREDEPLOY_URL_VAR": "not a name"})


def test_shadow_database_url_from_the_schema_or_the_setting(tmp_path: Path) -> None:
    """shadowDatabaseUrl = env("S") is the shadow database; PREDEPLOY_SHADOW_DATABASE_URL wins."""
    write(
        tmp_path / "prisma" / "schema.prisma",
        'datasource db {\n provider = "postgresql"\n url = env("DATABASE_URL")\n'
        ' shadowDatabaseUrl = env("SHADOW_URL")\n}\n',
    )
    shadow = "postgresql://app:shadowpw@shadow.example.com/shadow"
    settings = staging(tmp_path, {"DATABASE_URL": DIRECT, "SHADOW_URL": shadow})
    assert settings.shadow_database_url_var == "SHADOW_URL"
    assert "shadowpw" in settings.secrets()
    mine = "postgresql://app:minepw@mine.example.com/shadow"
    settings = staging(
        tmp_path,
        {"DATABASE_URL": DIRECT, "SHADOW_URL": shadow, "PREDEPLOY_SHADOW_DATABASE_URL": mine},
    )
    assert settings.shadow_database_url is not None
    assert settings.shadow_database_url.host == "mine.example.com"


def test_sslcert_is_found_beside_the_schema(tmp_path: Path) -> None:
    """A relative sslcert is read from the schema file's folder, as Prisma reads it."""
    root = app(tmp_path)
    write(root / "prisma" / "ca.pem", "x")
    direct = f"{DIRECT}&sslaccept=strict&sslcert=ca.pem"
    settings = staging(root, {"DATABASE_URL": POOLED, "DIRECT_URL": direct})
    assert settings.migration_url is not None
    assert settings.migration_url.connect_params()["sslrootcert"] == str(root / "prisma" / "ca.pem")


# --- .env files, found as Prisma finds them and layered as predeploy layers them -------


def test_root_env_and_prisma_env_are_both_read_and_the_root_wins(tmp_path: Path) -> None:
    """The .env beside package.json and prisma/.env are read; between them the root wins."""
    root = app(tmp_path)
    write(root / ".env", f"DATABASE_URL={POOLED}\nPREDEPLOY_LOG_DIR=root-logs\n")
    write(root / "prisma" / ".env", f"DIRECT_URL={DIRECT}\nPREDEPLOY_LOG_DIR=prisma-logs\n")
    settings = load_settings("dev", root, {})
    assert settings.files_read == (root / "prisma" / ".env", root / ".env")
    assert settings.log_dir == root / "root-logs"
    assert settings.direct_database_url_var == "DIRECT_URL"


def test_with_a_prisma_config_prisma_env_is_not_read(tmp_path: Path) -> None:
    """With prisma.config.ts Prisma loads no .env (dotenv reads the root one): same here."""
    root = app(tmp_path)
    write(root / "prisma.config.ts", 'export default { schema: "prisma/schema.prisma" }\n')
    write(root / ".env", f"DATABASE_URL={POOLED}\nDIRECT_URL={DIRECT}\n")
    write(root / "prisma" / ".env", "PREDEPLOY_LOG_DIR=prisma-logs\n")
    settings = load_settings("dev", root, {})
    assert settings.files_read == (root / ".env",)
    assert settings.log_dir == root / "logs"


def test_references_resolve_across_the_layers(tmp_path: Path) -> None:
    """${DB_HOST} in .env.staging refers to .env; the process environment wins over both."""
    write(tmp_path / ".env", "DB_HOST=db.example.com\nDB_PASSWORD='pa$$word'\n")
    write(
        tmp_path / ".env.staging",
        "DATABASE_URL=postgresql://app:${DB_PASSWORD}@${DB_HOST}:$DB_PORT/app\n"
        "DB_PORT=${PORT_FROM_ENV:-6432}\n",
    )
    settings = staging(tmp_path)
    assert settings.database_url is not None
    assert (settings.database_url.host, settings.database_url.port) == ("db.example.com", 6432)
    assert settings.database_url.password == "pa$$word"  # single quotes: taken as written
    overridden = staging(tmp_path, {"DB_HOST": "other.example.com", "PORT_FROM_ENV": "5433"})
    assert overridden.database_url is not None
    assert overridden.database_url.address == "other.example.com:5433"


def test_a_reference_to_itself_reads_the_layer_below(tmp_path: Path) -> None:
    """OPTS=${OPTS}... in .env.staging extends the value from .env; \\$ is a literal $."""
    write(tmp_path / ".env", "PREDEPLOY_LOG_DIR=logs\n")
    write(
        tmp_path / ".env.staging",
        f"DATABASE_URL={DIRECT}\nPREDEPLOY_LOG_DIR=${{PREDEPLOY_LOG_DIR}}/st\\$ge\n",
    )
    assert staging(tmp_path).log_dir == tmp_path / "logs" / "st$ge"


def test_a_reference_to_an_unset_variable_names_both(tmp_path: Path) -> None:
    """${DB_HOST} unset is exit 2 naming the variable, the file and the reference."""
    write(tmp_path / ".env.staging", "DATABASE_URL=postgresql://app@${DB_HOST}/app\n")
    with pytest.raises(
        ConfigError, match=r"DATABASE_URL in \.env\.staging refers to \$\{DB_HOST\}"
    ):
        staging(tmp_path)


def test_an_unset_reference_in_a_variable_never_read_is_harmless(tmp_path: Path) -> None:
    """The app's own variables are resolved only if predeploy reads them."""
    write(tmp_path / ".env", f"REDIS_URL=redis://${{REDIS_HOST}}\nDATABASE_URL={DIRECT}\n")
    assert staging(tmp_path).database_url is not None


def test_the_apps_generic_names_are_left_alone(tmp_path: Path) -> None:
    """An app's LOG_DIR or BACKUP_DIR never configures predeploy."""
    write(tmp_path / ".env", f"LOG_DIR=/var/log/web\nBACKUP_DIR=/b\nDATABASE_URL={DIRECT}\n")
    settings = staging(tmp_path)
    assert settings.log_dir == tmp_path / "logs"
    assert settings.backup_dir == tmp_path / "backups"


def test_unknown_predeploy_names_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    """A typo in a PREDEPLOY_ name, in a file or the environment, is exit 2 saying which."""
    write(tmp_path / ".env", "PREDEPLOY_LOG_DRI=logs\n")
    with pytest.raises(ConfigError) as err:
        load_settings("dev", tmp_path, {"PREDEPLOY_BACKUP_JOB": "2"})
    message = err.value.message
    assert err.value.exit_code == 2
    assert "PREDEPLOY_LOG_DRI in .env (did you mean PREDEPLOY_LOG_DIR?)" in message
    assert (
        "PREDEPLOY_BACKUP_JOB in the environment (did you mean PREDEPLOY_BACKUP_JOBS?)" in message
    )


# --- the project root ------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["prisma/", "package.json", ".git", ".git/", ".env", "tasks.py"])
def test_root_is_the_nearest_folder_with_a_marker(tmp_path: Path, marker: str) -> None:
    """prisma/, package.json, .git (folder or worktree file), .env or tasks.py mark the root."""
    target = tmp_path / marker.rstrip("/")
    if marker.endswith("/"):
        target.mkdir()
    else:
        target.write_text("")
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)
    assert find_root(nested, {}) == tmp_path


def test_root_from_inside_prisma_is_the_app(tmp_path: Path) -> None:
    """Run from prisma/migrations (whose prisma/ has a .env), the root is the app above."""
    root = app(tmp_path)
    write(root / "prisma" / ".env", "X=1\n")
    (root / "prisma" / "migrations").mkdir()
    assert find_root(root / "prisma" / "migrations", {}) == root
    assert find_root(root / "prisma", {}) == root


def test_an_app_folder_named_prisma_is_its_own_root(tmp_path: Path) -> None:
    """A repository called prisma (with .git, package.json and prisma/) is the root, not the
    folder above it, from itself and from its prisma/migrations."""
    root = app(tmp_path / "prisma")
    (root / ".git").mkdir()
    (root / "prisma" / "migrations").mkdir(parents=True, exist_ok=True)
    assert find_root(root, {}) == root
    assert find_root(root / "prisma" / "migrations", {}) == root


def test_root_can_be_named(tmp_path: Path) -> None:
    """PREDEPLOY_ROOT wins; a folder that does not exist is exit 2."""
    assert find_root(Path("/"), {"PREDEPLOY_ROOT": str(tmp_path)}) == tmp_path
    with pytest.raises(ConfigError, match=r"PREDEPLOY_ROOT=.* is not a folder"):
        find_root(tmp_path, {"PREDEPLOY_ROOT": str(tmp_path / "nope")})


def test_migrations_default_to_prisma_migrations_when_it_exists(tmp_path: Path) -> None:
    """Without a schema: prisma/migrations when it exists, else migrations."""
    assert load_settings("dev", tmp_path, {}).migrations_dir == tmp_path / "migrations"
    (tmp_path / "prisma" / "migrations").mkdir(parents=True)
    assert load_settings("dev", tmp_path, {}).migrations_dir == tmp_path / "prisma" / "migrations"
    named = load_settings("dev", tmp_path, {"PREDEPLOY_MIGRATIONS_DIR": "db/m"})
    assert named.migrations_dir == tmp_path / "db" / "m"
