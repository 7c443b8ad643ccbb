"""Commands, API tokens, page logins, sessions and controller state: the small admin tables."""

from __future__ import annotations

import json
from typing import cast

from edgefleet.controller.dal.sql_base import SqlBase, _command
from edgefleet.controller.schemas import (
    CommandRecord,
    CommandStatus,
    Role,
    TokenInfo,
)

__all__ = ["SqlAdmin"]

_COMMAND_COLUMNS = "command_id, device_id, name, args, status, created_at, updated_at, created_by, detail"


class SqlAdmin(SqlBase):
    """The admin half of :class:`~edgefleet.controller.dal.sql.SqlDatabase`."""

    # --- commands ---------------------------------------------------------------------------------
    def insert_command(self, record: CommandRecord) -> None:
        with self._tx() as conn:
            conn.run(
                f"INSERT INTO commands ({_COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.command_id,
                    record.device_id,
                    record.name,
                    json.dumps(record.args, sort_keys=True),
                    record.status,
                    record.created_at,
                    record.updated_at,
                    record.created_by,
                    record.detail,
                ),
            )

    def set_command_status(
        self, command_id: str, status: CommandStatus, *, at: float, detail: str | None = None
    ) -> bool:
        # An ack that raced ahead of the publish confirmation must not be overwritten by "sent".
        guard = (
            " AND status NOT IN ('acked', 'done', 'failed', 'expired', 'unknown')"
            if status in ("sent", "pending")
            else ""
        )
        with self._tx() as conn:
            changed = conn.run(
                "UPDATE commands SET status = ?, updated_at = ?, detail = COALESCE(?, detail) WHERE"
                f" command_id = ?{guard}",
                (status, at, detail, command_id),
            )
        return changed > 0

    def get_command(self, command_id: str) -> CommandRecord | None:
        with self._conn() as conn:
            rows = conn.rows(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE command_id = ?", (command_id,))
        return _command(rows[0]) if rows else None

    def list_commands(self, device_id: str, *, limit: int = 50) -> list[CommandRecord]:
        with self._conn() as conn:
            rows = conn.rows(
                f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE device_id = ? ORDER BY created_at DESC"
                " LIMIT ?",
                (device_id, limit),
            )
        return [_command(r) for r in rows]

    # --- auth -------------------------------------------------------------------------------------
    def add_token(self, token_id: str, name: str, role: Role, token_hash: str, *, at: float) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO api_tokens (token_id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?,"
                " ?)",
                (token_id, name, role, token_hash, at),
            )

    def find_token(self, token_hash: str, *, at: float) -> TokenInfo | None:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT token_id, name, role, created_at, last_used_at FROM api_tokens"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                (token_hash,),
            )
            if not rows:
                return None
            token_id, name, role, created_at, last_used = rows[0]
            # Writing on every request would serialize readers on SQLite; a minute's precision is enough.
            if last_used is None or at - float(last_used) > 60:
                with self._transaction(conn):
                    conn.run("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?", (at, token_id))
        return TokenInfo(
            token_id=token_id, name=name, role=role, created_at=float(created_at), last_used_at=at
        )

    def list_tokens(self) -> list[TokenInfo]:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT token_id, name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER"
                " BY created_at"
            )
        return [
            TokenInfo(
                token_id=r[0],
                name=r[1],
                role=r[2],
                created_at=float(r[3]),
                last_used_at=None if r[4] is None else float(r[4]),
                revoked_at=None if r[5] is None else float(r[5]),
            )
            for r in rows
        ]

    def revoke_token(self, token_id: str, *, at: float) -> bool:
        with self._tx() as conn:
            changed = conn.run(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
        return changed > 0

    def upsert_user(self, username: str, password_hash: str, role: Role, *, at: float) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role ="
                " excluded.role",
                (username, password_hash, role, at),
            )

    def create_first_user(self, username: str, password_hash: str, role: Role, *, at: float) -> bool:
        with self._tx() as conn:
            created = conn.run(
                "INSERT INTO users (username, password_hash, role, created_at)"
                " SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)",
                (username, password_hash, role, at),
            )
        return created > 0

    def get_user(self, username: str) -> tuple[str, Role] | None:
        with self._conn() as conn:
            rows = conn.rows("SELECT password_hash, role FROM users WHERE username = ?", (username,))
        return (str(rows[0][0]), cast(Role, rows[0][1])) if rows else None

    def add_session(
        self, session_hash: str, username: str, role: Role, *, at: float, expires_at: float
    ) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO sessions (session_hash, username, role, created_at, expires_at) VALUES (?, ?,"
                " ?, ?, ?)",
                (session_hash, username, role, at, expires_at),
            )

    def get_session(self, session_hash: str, *, at: float) -> tuple[str, Role] | None:
        with self._conn() as conn:
            rows = conn.rows(
                "SELECT username, role FROM sessions WHERE session_hash = ? AND expires_at > ?",
                (session_hash, at),
            )
        return (str(rows[0][0]), cast(Role, rows[0][1])) if rows else None

    def delete_session(self, session_hash: str) -> None:
        with self._tx() as conn:
            conn.run("DELETE FROM sessions WHERE session_hash = ?", (session_hash,))

    def get_state(self, key: str) -> str | None:
        with self._conn() as conn:
            rows = conn.rows("SELECT value FROM controller_state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_state(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.run(
                "INSERT INTO controller_state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
