"""Catalog and registry (items, users, keys, model versions, training runs) via SQLAlchemy.

The same code serves ``sqlite:///…`` (embedded default) and ``postgresql://…`` URLs
(driver: psycopg 3). Lists and maps are stored as JSON text so both databases read them
the same way; what one database would accept and the other refuse (a NUL character, a
string longer than its column) is refused, or for the audit log cut, on both.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from clickrec.core.errors import Conflict, InvalidInput

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

# "items": the last change_seq handed out. "models": publishes so far; its row is also the
# lock that makes publishes take turns.
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

# Serving processes alive (a heartbeat per pass of their erasure loop), and which of them
# have forgotten an erased reader: the lake phase, which clears the job's copy of the ids,
# waits until every live replica has (each keeps readers' histories in its memory).
replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False, index=True),
)
erasure_acks = sa.Table(
    "erasure_acks",
    metadata,
    sa.Column("erasure_id", sa.String(32), primary_key=True),
    sa.Column("replica_id", sa.String(32), primary_key=True),
)

# Leases: one holder at a time for a job that must not run twice at once (the trainer),
# taken over once its holder stopped renewing it; ``token`` grows with every new holder.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("token", sa.Integer, nullable=False),
)

_JSON_ITEM_FIELDS = ("categories", "tags", "attributes")
_ITEM_FIELDS = [
    c.name for c in items.columns if c.name not in ("deleted", "updated_at", "change_seq")
]
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
        url = engine_url(url)
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True  # a database restart costs no failed request
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name not in _UPSERTS:
            raise ValueError(f"no catalog backend for the {self.engine.dialect.name} dialect")
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        _create_schema(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- items -------------------------------------------------------------------------
    @staticmethod
    def _take_change_seqs(conn: sa.Connection, n: int) -> int:
        """Reserve ``n`` change seqs; returns the last one before them. The update comes
        first in the transaction, so it takes the write lock (SQLite) or the counter's row
        lock (PostgreSQL) until commit: writers never share seqs, and they commit in seq
        order, so a reader of the change feed never skips one."""
        return _take_counter(conn, "items", n) - n

    def upsert_items(self, records: Sequence[dict[str, Any]], now: float) -> None:
        """Insert or replace whole items in one transaction (a batch is all-or-nothing; an
        id repeated in the batch keeps its last version)."""
        records = list({r["item_id"]: r for r in records}.values())
        rows = []
        for rec in records:
            row = {c: rec.get(c) for c in _ITEM_FIELDS}  # a field left out is cleared
            for key in _JSON_ITEM_FIELDS:
                row[key] = _dumps(row.get(key) or ([] if key != "attributes" else {}))
            _check_storable(items, row)
            rows.append(row)
        if not rows:
            return
        with self.engine.begin() as conn:
            seq = self._take_change_seqs(conn, len(rows))
            for offset, row in enumerate(rows, start=1):
                row.update(deleted=False, updated_at=now, change_seq=seq + offset)
            _upsert(conn, items, rows)

    def get_item(self, item_id: str, include_deleted: bool = False) -> dict[str, Any] | None:
        if not _findable(item_id):
            return None
        query = items.select().where(items.c.item_id == item_id)
        if not include_deleted:
            query = query.where(items.c.deleted.is_(False))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _row(row) if row else None

    def delete_item(self, item_id: str, now: float) -> bool:
        """Mark an item deleted (kept as a tombstone so every server learns of it)."""
        if not _findable(item_id):
            return False
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
        for row in rows:
            _check_storable(users, row)
        if not rows:
            return
        with self.engine.begin() as conn:
            _upsert(conn, users, rows)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        if not _findable(user_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(users.select().where(users.c.user_id == user_id)).first()
        return _row(row) if row else None

    def delete_user(self, user_id: str) -> bool:
        if not _findable(user_id):
            return False
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
        if not _findable(erasure_id):
            return None
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
        if not _findable(erasure_id):
            return False
        for name in ("counts", "subject"):
            if values.get(name) is not None:
                values[name] = _dumps(values[name])
        query = erasures.update().where(erasures.c.id == erasure_id)
        if expect is not None:
            query = query.where(erasures.c.state == expect)
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount > 0

    def ack_erasure(self, erasure_id: str, replica_id: str) -> None:
        """Record that a serving process has forgotten the job's reader (idempotent)."""
        with self.engine.begin() as conn:
            _upsert(conn, erasure_acks, [{"erasure_id": erasure_id, "replica_id": replica_id}])

    def erasure_acks(self, erasure_id: str) -> set[str]:
        query = sa.select(erasure_acks.c.replica_id).where(erasure_acks.c.erasure_id == erasure_id)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def drop_erasure_acks(self, erasure_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(erasure_acks.delete().where(erasure_acks.c.erasure_id == erasure_id))

    # -- leases ------------------------------------------------------------------------
    def take_lease(self, name: str, holder: str, now: float, seconds: float) -> int | None:
        """Take or renew the lease ``name`` for ``seconds``: its fencing token (new with each
        new holder) while ``holder`` has it, None while another holder's has not expired."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(leases.c.holder, leases.c.expires_at, leases.c.token)
                .where(leases.c.name == name)
                .with_for_update()
            ).first()
            if row is None:
                fresh = {"name": name, "holder": "", "expires_at": 0.0, "token": 0}
                _upsert(conn, leases, [fresh], keep=("holder", "expires_at", "token"))
                row = conn.execute(
                    sa.select(leases.c.holder, leases.c.expires_at, leases.c.token)
                    .where(leases.c.name == name)
                    .with_for_update()
                ).one()
            if row.holder != holder and row.expires_at >= now:
                return None
            token = row.token if row.holder == holder else row.token + 1
            taken = conn.execute(  # only if nobody changed the row since it was read
                leases.update()
                .where(
                    leases.c.name == name,
                    leases.c.holder == row.holder,
                    leases.c.expires_at == row.expires_at,
                    leases.c.token == row.token,
                )
                .values(holder=holder, expires_at=now + seconds, token=token)
            )
            return token if taken.rowcount else None

    def drop_lease(self, name: str, holder: str) -> None:
        """Give a lease up (the next taker need not wait for it to expire)."""
        with self.engine.begin() as conn:
            conn.execute(
                leases.update()
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(expires_at=0.0)
            )

    # -- replicas ----------------------------------------------------------------------
    def beat(self, replica_id: str, now: float) -> None:
        """A serving process says it is alive (registering it the first time)."""
        row = {"id": replica_id, "started_at": now, "seen_at": now}
        with self.engine.begin() as conn:
            _upsert(conn, replicas, [row], keep=("started_at",))

    def live_replicas(self, since: float) -> set[str]:
        """Serving processes heard from at or after ``since``."""
        query = sa.select(replicas.c.id).where(replicas.c.seen_at >= since)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def drop_replica(self, replica_id: str, older_than: float | None = None) -> None:
        """Forget a replica that stopped; with ``older_than``, also every replica not
        heard from since then (killed ones), and their acknowledgements."""
        gone = replicas.c.id == replica_id
        if older_than is not None:
            gone = sa.or_(gone, replicas.c.seen_at < older_than)
        with self.engine.begin() as conn:
            ids = list(conn.execute(sa.select(replicas.c.id).where(gone)).scalars())
            if ids:
                conn.execute(replicas.delete().where(replicas.c.id.in_(ids)))
                conn.execute(erasure_acks.delete().where(erasure_acks.c.replica_id.in_(ids)))

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
        write-ahead log (SQLite: VACUUM, then a truncating checkpoint). On PostgreSQL, a
        plain VACUUM of the tables that named readers prunes their deleted rows without
        locking readers out; bytes left in freed pages and its WAL until reused are for disk
        encryption to cover (docs/security.md)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name != "sqlite":
                names = ", ".join(t.name for t in (users, audit_log, erasures))
                conn.exec_driver_sql(f"VACUUM {names}")
                return
            conn.exec_driver_sql("VACUUM")
            for _ in range(50):
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
                if not busy:
                    break
                time.sleep(0.1)

    # -- filters -----------------------------------------------------------------------
    def put_filter(self, name: str, expression: str, now: float) -> dict[str, Any]:
        """Create or replace a named filter (the expression is checked by the caller); a
        replaced filter keeps its ``created_at``."""
        row = {"name": name, "expression": expression, "created_at": now, "updated_at": now}
        _check_storable(filters, row)
        with self.engine.begin() as conn:
            _upsert(conn, filters, [row], keep=("created_at",))
            stored = conn.execute(filters.select().where(filters.c.name == name)).one()
        return _row(stored)

    def get_filter(self, name: str) -> dict[str, Any] | None:
        if not _findable(name):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(filters.select().where(filters.c.name == name)).first()
        return _row(row) if row else None

    def list_filters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(filters.select().order_by(filters.c.name)).all()
        return [_row(r) for r in rows]

    def delete_filter(self, name: str) -> bool:
        if not _findable(name):
            return False
        with self.engine.begin() as conn:
            return conn.execute(filters.delete().where(filters.c.name == name)).rowcount > 0

    # -- keys --------------------------------------------------------------------------
    def add_key(self, record: dict[str, Any]) -> None:
        """Store a new key (IntegrityError if its id is taken); InvalidInput for a field
        too long for its column or holding a NUL."""
        _check_storable(api_keys, record)
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert(), [record])

    def get_key(self, key_id: str) -> dict[str, Any] | None:
        if not _findable(key_id):
            return None
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
        """Append an entry; strings too long for their column are cut and NULs replaced,
        since an entry names whatever path a request asked for and must not be lost."""
        row = {k: _fit(audit_log.c[k], v) if isinstance(v, str) else v for k, v in record.items()}
        with self.engine.begin() as conn:
            conn.execute(audit_log.insert(), [row])

    def audit_entries(self, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before`` pages back by id."""
        query = audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit_log.c.id < before)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def revoke_key(self, key_id: str, now: float) -> bool:
        if not _findable(key_id):
            return False
        with self.engine.begin() as conn:
            result = conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return result.rowcount > 0

    # -- model versions ----------------------------------------------------------------
    def add_model_version(
        self, record: dict[str, Any], make_live: bool, fence: tuple[str, int] | None = None
    ) -> None:
        """Record a model version (live when ``make_live``). With ``fence`` (a lease's name
        and token), only while that lease still has that token: a trainer that lost its
        lease to another worker publishes nothing (Conflict)."""
        row = dict(
            record,
            metrics=_dumps(record.get("metrics", {})),
            info=_dumps(record.get("info", {})),
            live=False,
        )
        with self.engine.begin() as conn:
            # Publishes take turns: a concurrent one would not see this new row and could
            # leave two versions live.
            _take_counter(conn, "models", 1)
            if fence is not None:
                name, token = fence
                now_token = conn.execute(
                    sa.select(leases.c.token).where(leases.c.name == name).with_for_update()
                ).scalar()
                if now_token != token:
                    raise Conflict(
                        f"the {name} lease passed to another worker (token {now_token}, this "
                        f"run's {token}): its model is not published"
                    )
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
        if not _findable(run_id):
            return
        if "metrics" in values:
            values["metrics"] = _dumps(values["metrics"])
        with self.engine.begin() as conn:
            conn.execute(
                training_runs.update().where(training_runs.c.id == run_id).values(**values)
            )

    def claim_run(self, run_id: str, now: float) -> bool:
        """Move a pending run to running; False if another worker took it first."""
        if not _findable(run_id):
            return False
        with self.engine.begin() as conn:
            result = conn.execute(
                training_runs.update()
                .where(training_runs.c.id == run_id, training_runs.c.state == "pending")
                .values(state="running", started_at=now)
            )
        return result.rowcount > 0

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        if not _findable(run_id):
            return None
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


_SCHEMA_LOCK = 0x636C69636B726563  # "clickrec": the advisory lock id of schema changes


def engine_url(url: str) -> str:
    """The SQLAlchemy URL of a catalog URL: ``postgresql://`` and ``postgres://`` name the
    psycopg 3 driver (SQLAlchemy 2.0 would pick psycopg2 for the first)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _create_schema(engine: Engine) -> None:
    """Create the tables, add the columns an older catalog lacks and the counters, holding
    the database's lock, so that processes opening one catalog at once (a server and its
    worker, replicas) wait for each other instead of failing on each other's tables."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            # pysqlite would not put DDL in a transaction: take SQLite's write lock by hand.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                _create_schema_in(conn)
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        return
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        _create_schema_in(conn)


def _create_schema_in(conn: sa.Connection) -> None:
    metadata.create_all(conn)
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    have = set(conn.execute(sa.select(counters.c.name)).scalars())
    if "items" not in have:
        latest = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(items.c.change_seq), 0))
        ).scalar_one()
        conn.execute(counters.insert(), [{"name": "items", "value": int(latest)}])
    if "models" not in have:
        conn.execute(counters.insert(), [{"name": "models", "value": 0}])


def _take_counter(conn: sa.Connection, name: str, n: int) -> int:
    """Add ``n`` to a counter and return its new value; its row stays locked until the
    transaction ends, so the transactions that take one counter run one after another."""
    conn.execute(
        counters.update().where(counters.c.name == name).values(value=counters.c.value + n)
    )
    value = conn.execute(sa.select(counters.c.value).where(counters.c.name == name)).scalar_one()
    return int(value)


_UPSERTS: dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def _upsert(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keep: Sequence[str] = ()
) -> None:
    """Insert rows, or update the rows with the same primary key (but their ``keep``
    columns) in place: one statement, so concurrent writers of one new key never collide."""
    statement = _UPSERTS[conn.dialect.name](table)
    key = [c.name for c in table.primary_key]
    changed = {
        c.name: statement.excluded[c.name]
        for c in table.columns
        if c.name not in key and c.name not in keep
    }
    if not changed:  # every column is the key: a row already there is left as it is
        conn.execute(statement.on_conflict_do_nothing(index_elements=key), rows)
        return
    conn.execute(statement.on_conflict_do_update(index_elements=key, set_=changed), rows)


def copy_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Write rows as they are (a migration from another catalog): inserted, or replacing
    the rows with the same key."""
    _upsert(conn, table, rows)


def _findable(*values: str) -> bool:
    """Whether a row could have these ids: no stored string holds a NUL, and PostgreSQL
    refuses one even in a query."""
    return not any("\x00" in v for v in values)


def _check_storable(table: sa.Table, row: dict[str, Any]) -> None:
    """InvalidInput for a string that holds a NUL or is longer than its column, which
    PostgreSQL refuses and SQLite would keep: both databases hold the same things."""
    for name, value in row.items():
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise InvalidInput(f"{name} must not contain a NUL character")
        length = getattr(table.c[name].type, "length", None)
        if length is not None and len(value) > length:
            raise InvalidInput(f"{name} is longer than {length} characters")


def _fit(column: sa.Column[Any], value: str) -> str:
    """A string made storable in this column: NULs replaced, cut to the column's length."""
    length = getattr(column.type, "length", None)
    return value.replace("\x00", "\ufffd")[:length]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # Switching a new file to WAL takes its lock without the busy handler: processes that
    # open a fresh catalog at once wait their turn here instead of failing.
    for attempt in range(200):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten (erasure)
    cursor.close()
