"""Fixtures shared by the whole suite.

Every test that touches the database runs twice: on SQLite and on PostgreSQL (when
``HIS_TEST_POSTGRES_URL`` is set; under CI it must be). One database per backend per
session, migrated once; each test runs inside an outer transaction that is rolled back,
and the app's own commits only release savepoints inside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from his import create_app
from his.config import Settings
from his.db import Database, make_engine
from tests import databases, factories

BACKENDS = ["sqlite", "postgresql"]


def settings_for(url: str, **overrides) -> Settings:
    env = {"HIS_ENV": "test", "HIS_DATABASE_URL": url, "HIS_LOG_FORMAT": "console"}
    env.update(overrides)
    return Settings.from_env(env)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    if request.param == "postgresql" and databases.postgres_admin_url() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL lane: set {databases.POSTGRES_ENV}")
        pytest.skip(f"PostgreSQL lane: set {databases.POSTGRES_ENV} to run it")
    return request.param


# One migrated database per backend per run; every other test database is a copy of it.
_templates: dict[str, str] = {}


def _template(backend: str, tmp_path_factory) -> str:
    if backend not in _templates:
        if backend == "sqlite":
            url = databases.create_sqlite(tmp_path_factory.mktemp("template"))
            _templates[backend] = make_url(url).database
        else:
            url = databases.create_postgres(databases.postgres_admin_url())
            _templates[backend] = make_url(url).database
    return _templates[backend]


@pytest.fixture(scope="session", autouse=True)
def _drop_templates() -> Iterator[None]:
    yield
    if "postgresql" in _templates:
        admin = databases.postgres_admin_url()
        url = make_url(admin).set(database=_templates.pop("postgresql"))
        databases.drop_postgres(admin, url.render_as_string(hide_password=False))


def _new_database(backend: str, tmp_path_factory) -> Iterator[str]:
    template = _template(backend, tmp_path_factory)
    if backend == "sqlite":
        yield databases.create_sqlite(tmp_path_factory.mktemp("db"), Path(template))
        return
    admin = databases.postgres_admin_url()
    url = databases.create_postgres(admin, template)
    try:
        yield url
    finally:
        databases.drop_postgres(admin, url)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory) -> Iterator[str]:
    yield from _new_database(backend, tmp_path_factory)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def db_session(session_factory) -> Iterator[Session]:
    session = session_factory()
    factories.bind(session)
    yield session
    session.close()


@pytest.fixture
def make_app(database_url: str, engine: Engine, session_factory):
    """Builds an app on the test transaction; keyword arguments are HIS_* settings."""

    def build(**env: str) -> Flask:
        return create_app(
            settings_for(database_url, **env), database=Database(engine, session_factory)
        )

    return build


@pytest.fixture
def app(make_app, db_session) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def facility(db_session):
    return factories.FacilityFactory()


@pytest.fixture
def login_token(client: FlaskClient):
    """Returns a function that logs a user in through the API and gives auth headers."""

    def token_for(username: str, password: str = factories.PASSWORD) -> dict[str, str]:
        response = client.post(
            "/api/v1/auth/token", json={"username": username, "password": password}
        )
        assert response.status_code == 201, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    return token_for


@pytest.fixture(scope="session")
def fresh_database(tmp_path_factory):
    """A separate, committed database for tests that need real commits (the live server)."""

    def build(backend: str) -> Iterator[str]:
        return _new_database(backend, tmp_path_factory)

    return build


@pytest.fixture
def cli_db(backend, fresh_database, monkeypatch, tmp_path):
    """A real, committed database of each backend, as an operator's would be, named by
    ``HIS_DATABASE_URL`` for the ``his`` command (claim signing keys in a scratch folder)."""
    databases = fresh_database(backend)
    url = next(databases)
    monkeypatch.setenv("HIS_ENV", "development")
    monkeypatch.setenv("HIS_DATABASE_URL", url)
    monkeypatch.setenv("HIS_CLAIM_KEYS_DIR", str(tmp_path / "claim-keys"))
    yield url
    databases.close()


@pytest.fixture(scope="module")
def babel_context():
    """Validators' messages are lazy strings: they render inside an app context (English)."""
    from flask_babel import Babel

    bare = Flask(__name__)
    Babel(bare)
    with bare.app_context():
        yield
