"""Catalog and registry (items, users, keys, model versions, training runs) via SQLAlchemy.

The same code serves ``sqlite:///…`` (embedded default) and ``postgresql://…`` URLs.
Lists and maps are stored as JSON text so both databases read them the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

items = sa.Table(
    "items",
    metadata,
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("published_at", sa.Float),
    sa.Column("categories", sa.Text, nullable=False, default="[]"),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("author", sa.String(256)),
    sa.Column("title", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("language", sa.String(16)),
    sa.Column("expires_at", sa.Float),
    sa.Column("attributes", sa.Text, nullable=False, default="{}"),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("change_seq", sa.BigInteger, nullable=False, index=True),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(256), primary_key=True),
    sa.Column("attributes", sa.Text, nullable=False, default="{}"),
    sa.Column("updated_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    # The AWS SigV4 secret, sealed with the data keys (``plain:`` when encryption is off);
    # NULL for keys made before SigV4 support.
    sa.Column("sigv4_secret", sa.Text),
    sa.Column("origins", sa.Text),  # a tracker key's allowed origins, space-separated
    sa.Column("expires_at", sa.Float),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("recipe", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("info", sa.Text, nullable=False, default="{}"),
    sa.Column("live", sa.Boolean, nullable=False, default=False),
)

training_runs = sa.Table(
    "training_runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("step", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("model_version", sa.String(64)),
    sa.Column("published", sa.Boolean),
    sa.Column("last_seq", sa.BigInteger),
)

filters = sa.Table(
    "filters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("expression", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("actor", sa.String(160), nullable=False),  # key name and id, or cli:<user>
    sa.Column("action", sa.String(200), nullable=False),  # "PUT /v1/filters/{name}", …
    sa.Column("target", sa.String(300)),
    sa.Column("source", sa.String(100)),  # client address, or "local" for the CLI
    sa.Column("status", sa.Integer),
    sa.Column("request_id", sa.String(32)),
)

# Erasures of readers (DELETE /v1/users/{id}). ``subject`` holds the reader's ids only
# while the job runs: it is cleared when the job ends, and the file then compacted.
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # pending|lake|done|failed
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("subject", sa.Text),
    sa.Column("counts", sa.Text, nullable=False, default="{}"),
    sa.Column("error", sa.Text),
)

_JSON_ITEM_FIELDS = ("categories", "tags", "attributes")
_JSON_FIELDS = {"categories", "tags", "attributes", "metrics", "info", "counts", "subject"}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _row(row: sa.Row[Any]) -> dict[str, Any]:
    return _row_dict(dict(row._mapping))


def _row_dict(out: dict[str, Any]) -> dict[str, Any]:
    """JSON text columns decoded (an empty one as {})."""
    for key in _JSON_FIELDS & out.keys():
        out[key] = orjson.loads(out[key]) if out[key] else {}
    return out


class SQLCatalog:
    """Items, users, keys, model versions and training runs in one SQL database."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        try:
            with self.engine.begin() as conn:
                if conn.execute(counters.select().where(counters.c.name == "items")).first():
                    return
                latest = conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(items.c.change_seq), 0))
                ).scalar_one()
                conn.execute(counters.insert(), [{"name": "items", "value": int(latest)}])
        except sa.exc.IntegrityError:
            pass  # another process opening the same catalog created the counter first

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- items -------------------------------------------------------------------------
    @staticmethod
    def _take_change_seqs(conn: sa.Connection, n: int) -> int:
        """Reserve ``n`` change seqs; returns the last one before them. The update comes
        first in the transaction, so it takes the write lock and writers never share seqs."""
        conn.execute(
            counters.update().where(counters.c.name == "items").values(value=counters.c.value + n)
        )
        value = conn.execute(
            sa.select(counters.c.value).where(counters.c.name == "items")
        ).scalar_one()
        return int(value) - n

    def upsert_items(self, records: Sequence[dict[str, Any]], now: float) -> None:
        """Insert or replace whole items in one transaction (a batch is all-or-nothing; an
        id repeated in the batch keeps its last version)."""
        records = list({r["item_id"]: r for r in records}.values())
        with self.engine.begin() as conn:
            seq = self._take_change_seqs(conn, len(records))
            rows = []
            for offset, rec in enumerate(records, start=1):
                row = dict(rec)
                for key in _JSON_ITEM_FIELDS:
                    row[key] = _dumps(row.get(key) or ([] if key != "attributes" else {}))
                row.update(deleted=False, updated_at=now, change_seq=seq + offset)
                rows.append(row)
            ids = [r["item_id"] for r in rows]
            conn.execute(items.delete().where(items.c.item_id.in_(ids)))
            conn.execute(items.insert(), rows)

    def get_item(self, item_id: str, include_deleted: bool = False) -> dict[str, Any] | None:
        query = items.select().where(items.c.item_id == item_id)
        if not include_deleted:
            query = query.where(items.c.deleted.is_(False))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _row(row) if row else None

    def delete_item(self, item_id: str, now: float) -> bool:
        """Mark an item deleted (kept as a tombstone so every server learns of it)."""
        with self.engine.begin() as conn:
            seq = self._take_change_seqs(conn, 1)
            result = conn.execute(
                items.update()
                .where(items.c.item_id == item_id, items.c.deleted.is_(False))
                .values(deleted=True, updated_at=now, change_seq=seq + 1)
            )
        return result.rowcount > 0

    def items_changed_since(self, change_seq: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """Items (deleted ones too) changed after ``change_seq``, oldest change first."""
        query = (
            items.select()
            .where(items.c.change_seq > change_seq)
            .order_by(items.c.change_seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(items).where(items.c.deleted.is_(False))
                ).scalar_one()
            )

    # -- users -------------------------------------------------------------------------
    def upsert_users(self, records: Sequence[dict[str, Any]], now: float) -> None:
        """Insert or replace users; an id repeated in the batch keeps its last version."""
        records = list({r["user_id"]: r for r in records}.values())
        rows = [
            {
                "user_id": r["user_id"],
                "attributes": _dumps(r.get("attributes") or {}),
                "updated_at": now,
            }
            for r in records
        ]
        with self.engine.begin() as conn:
            conn.execute(users.delete().where(users.c.user_id.in_([r["user_id"] for r in rows])))
            conn.execute(users.insert(), rows)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(users.select().where(users.c.user_id == user_id)).first()
        return _row(row) if row else None

    def delete_user(self, user_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(users.delete().where(users.c.user_id == user_id)).rowcount > 0

    # -- erasures ----------------------------------------------------------------------
    def add_erasure(self, subject: dict[str, Any], now: float) -> dict[str, Any]:
        row = {
            "id": uuid.uuid4().hex[:16],
            "state": "pending",
            "created_at": now,
            "subject": _dumps(subject),
            "counts": "{}",
        }
        with self.engine.begin() as conn:
            conn.execute(erasures.insert(), [row])
        return _row_dict(row)

    def get_erasure(self, erasure_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(erasures.select().where(erasures.c.id == erasure_id)).first()
        return _row(row) if row else None

    def list_erasures(
        self, states: Iterable[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Oldest first, so jobs run in the order they were asked for."""
        query = erasures.select().order_by(erasures.c.created_at).limit(limit)
        if states is not None:
            query = query.where(erasures.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def update_erasure(self, erasure_id: str, expect: str | None = None, **values: Any) -> bool:
        """Set fields (``counts``/``subject`` as objects); with ``expect``, only if the job
        is still in that state (False otherwise: another process moved it)."""
        for name in ("counts", "subject"):
            if values.get(name) is not None:
                values[name] = _dumps(values[name])
        query = erasures.update().where(erasures.c.id == erasure_id)
        if expect is not None:
            query = query.where(erasures.c.state == expect)
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount > 0

    def scrub_audit(self, targets: list[str], replacement: str) -> int:
        """Replace these exact audit targets (paths that named an erased reader)."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    audit_log.update()
                    .where(audit_log.c.target.in_(targets))
                    .values(target=replacement)
                ).rowcount
            )

    def compact(self) -> None:
        """Rebuild the database file so deleted rows leave no copy in free pages or the
        write-ahead log (SQLite: VACUUM, then a truncating checkpoint). On PostgreSQL,
        deleted tuples are left to its own VACUUM and to disk encryption (docs/security.md)."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM")
            for _ in range(50):
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
                if not busy:
                    break
                time.sleep(0.1)

    # -- filters -----------------------------------------------------------------------
    def put_filter(self, name: str, expression: str, now: float) -> dict[str, Any]:
        """Create or replace a named filter (the expression is checked by the caller)."""
        with self.engine.begin() as conn:
            old = conn.execute(filters.select().where(filters.c.name == name)).first()
            created = old.created_at if old else now
            conn.execute(filters.delete().where(filters.c.name == name))
            row = {"name": name, "expression": expression, "created_at": created, "updated_at": now}
            conn.execute(filters.insert(), [row])
        return row

    def get_filter(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(filters.select().where(filters.c.name == name)).first()
        return _row(row) if row else None

    def list_filters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(filters.select().order_by(filters.c.name)).all()
        return [_row(r) for r in rows]

    def delete_filter(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(filters.delete().where(filters.c.name == name)).rowcount > 0

    # -- keys --------------------------------------------------------------------------
    def add_key(self, record: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert(), [record])

    def get_key(self, key_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(api_keys.select().where(api_keys.c.key_id == key_id)).first()
        return _row(row) if row else None

    def list_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                _row(r) for r in conn.execute(api_keys.select().order_by(api_keys.c.created_at))
            ]

    def set_sigv4_secret(self, key_id: str, stored: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.update().where(api_keys.c.key_id == key_id).values(sigv4_secret=stored)
            )

    # -- audit -----------------------------------------------------------------------
    def audit(self, record: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(audit_log.insert(), [record])

    def audit_entries(self, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before`` pages back by id."""
        query = audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit_log.c.id < before)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def revoke_key(self, key_id: str, now: float) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return result.rowcount > 0

    # -- model versions ----------------------------------------------------------------
    def add_model_version(self, record: dict[str, Any], make_live: bool) -> None:
        row = dict(
            record,
            metrics=_dumps(record.get("metrics", {})),
            info=_dumps(record.get("info", {})),
            live=False,
        )
        with self.engine.begin() as conn:
            conn.execute(model_versions.insert(), [row])
            if make_live:
                conn.execute(model_versions.update().values(live=False))
                conn.execute(
                    model_versions.update()
                    .where(model_versions.c.version == record["version"])
                    .values(live=True)
                )

    def live_model(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                model_versions.select().where(model_versions.c.live.is_(True))
            ).first()
        return _row(row) if row else None

    def list_models(self, limit: int = 50) -> list[dict[str, Any]]:
        query = model_versions.select().order_by(model_versions.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    # -- training runs -----------------------------------------------------------------
    def create_run(self, trigger: str, now: float) -> dict[str, Any]:
        run_id = uuid.uuid4().hex[:16]
        run: dict[str, Any] = {
            "id": run_id,
            "state": "pending",
            "trigger": trigger,
            "created_at": now,
            "metrics": "{}",
        }
        with self.engine.begin() as conn:
            conn.execute(training_runs.insert(), [run])
        return self.get_run(run_id) or run

    def update_run(self, run_id: str, **values: Any) -> None:
        if "metrics" in values:
            values["metrics"] = _dumps(values["metrics"])
        with self.engine.begin() as conn:
            conn.execute(
                training_runs.update().where(training_runs.c.id == run_id).values(**values)
            )

    def claim_run(self, run_id: str, now: float) -> bool:
        """Move a pending run to running; False if another worker took it first."""
        with self.engine.begin() as conn:
            result = conn.execute(
                training_runs.update()
                .where(training_runs.c.id == run_id, training_runs.c.state == "pending")
                .values(state="running", started_at=now)
            )
        return result.rowcount > 0

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(training_runs.select().where(training_runs.c.id == run_id)).first()
        return _row(row) if row else None

    def list_runs(
        self, states: Iterable[str] | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        query = training_runs.select().order_by(training_runs.c.created_at.desc()).limit(limit)
        if states is not None:
            query = query.where(training_runs.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]


_ADDED_COLUMNS = [
    ("api_keys", "sigv4_secret", "TEXT"),
    ("api_keys", "origins", "TEXT"),
    ("api_keys", "expires_at", "FLOAT"),
]
"""Columns added after their table was first released, for catalogs made before them."""


def _add_missing_columns(engine: Engine) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each added column a catalog lacks (idempotent; two
    processes opening an old catalog at once may race, and the loser finds it done)."""
    for table, column, kind in _ADDED_COLUMNS:
        if column in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
        except sa.exc.DBAPIError:
            if column not in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
                raise


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten (erasure)
    cursor.close()
