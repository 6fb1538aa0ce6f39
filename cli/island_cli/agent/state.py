"""``<state_dir>/state.json``: ``{host_id, paired, account_id, paired_at}``.

The host_id is generated on first start and kept; the file is replaced atomically so a
crash never leaves half a file behind.
"""

import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError


@dataclass
class State:
    host_id: str
    paired: bool = False
    account_id: str | int | None = None
    paired_at: str | int | None = None


def load(state_dir: Path, *, host_id: str | None = None) -> State:
    """Read the state, creating it (with a new host_id) on first start. A host_id in the
    config file wins over the stored one."""
    path = state_dir / "state.json"
    state = State(host_id=host_id or str(uuid.uuid4()))
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stored = State(
                host_id=str(uuid.UUID(data["host_id"])),
                paired=bool(data.get("paired", False)),
                account_id=data.get("account_id"),
                paired_at=data.get("paired_at"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if host_id is None or host_id == stored.host_id:
            return stored
    save(state_dir, state)
    return state


def save(state_dir: Path, state: State) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".state-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(state), handle, indent=2)
        os.replace(tmp, state_dir / "state.json")
    except OSError as exc:
        raise ConfigError(f"cannot write {state_dir / 'state.json'}: {exc}") from exc
