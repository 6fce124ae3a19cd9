"""Where a Redis server is: URL parsing, secret redaction, and connecting with errors a user can read."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from redisprobe.errors import ConnectionProblem, ProbeError

if TYPE_CHECKING:  # redis-py is imported where it is used: commands that never connect start faster
    import redis

_SCHEMES = {"redis", "rediss", "unix", "valkey", "valkeys"}
# Where a URL starts, in any case (REDIS:// connects like redis://); what follows runs to white space or a quote.
_URL_START = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://")
_URL_END = re.compile(r"[\s'\"<>`]")
_SECRET_OPTION = re.compile(r"(?i)([?&;](?:password|pass|pwd|passwd|secret|token|auth|requirepass)=)[^&#;]*")
_known_secrets: set[str] = set()
TIMEOUT_ENV = "REDISPROBE_CONNECT_TIMEOUT"  # children (actors, the MONITOR reader) inherit it
DEFAULT_TIMEOUT = 3.0


def connect_timeout() -> float:
    """How long redisprobe waits for a server, for a connection or for any one reply (`--connect-timeout`)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def set_connect_timeout(seconds: float | None) -> None:
    """`--connect-timeout`, for this process and every child it starts."""
    if seconds is not None:
        os.environ[TIMEOUT_ENV] = repr(float(seconds))
_SHORTEST_SECRET_REPLACED = 4  # shorter literal passwords are hidden only inside URLs (else "pw" hides words)


def remember_secret(secret: str | None) -> None:
    """A password this process has seen: hidden wherever it appears in output, not only inside URLs."""
    if secret and len(secret) >= _SHORTEST_SECRET_REPLACED:
        _known_secrets.add(secret)
        encoded = quote(secret, safe="")
        if encoded != secret:
            _known_secrets.add(encoded)


def redact(text: str) -> str:
    """`text` with every URL password shown as `***` (user names stay: they are not secrets).

    A URL's user information is found the way the connection finds it (urlsplit: up to the last `@` of the
    network location, in any case of the scheme), and where a password holds a `/`, `?` or `#` that the
    connection would misread, up to the last `@` of the URL: hiding too much is better than showing a secret.
    Password options in the query are hidden too, and so is every password this process has parsed.
    """
    if "://" in text:
        text = _redact_urls(text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _redact_urls(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _URL_START.finditer(text):
        if match.start() < pos:
            continue
        end_match = _URL_END.search(text, match.end())
        end = end_match.start() if end_match else len(text)
        out.append(text[pos:match.end()])
        out.append(_redact_url_rest(text[match.end():end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _redact_url_rest(rest: str) -> str:
    """What follows `scheme://`, with its password hidden (query options first: their values may hold '@')."""
    rest = _SECRET_OPTION.sub(_hide_option, rest)
    netloc_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, netloc_end)
    if at < 0:
        at = rest.rfind("@")  # a password with '/', '?' or '#' in it: hide up to the URL's last '@'
    if at >= 0:
        user, sep, password = rest[:at].partition(":")
        remember_secret(unquote(password) if sep else unquote(user))
        hidden = f"{user}:***" if sep else "***"
        rest = hidden + rest[at:]
    return rest


def _hide_option(match: re.Match[str]) -> str:
    remember_secret(unquote(match.group(0)[len(match.group(1)):]))
    return f"{match.group(1)}***"


@dataclass(frozen=True)
class Target:
    """A server endpoint as the user gave it; `url` keeps the secret, `label` never does."""

    url: str
    host: str | None
    port: int | None
    db: int
    unix_path: str | None = None
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The URL without its password: safe for output and traces."""
        return redact(self.url)

    @property
    def address(self) -> str:
        return self.unix_path or f"{self.host}:{self.port}"

    def connect(self, *, name: str | None = None, timeout: float | None = None, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this target (no I/O yet: call `ping(client, target)` to check).

        Every wait (connecting, each reply) is bounded by `timeout`, by default `connect_timeout()`, and is not
        retried unless `retry` says so: redis-py's default retries would multiply the timeout (a server that
        accepts and never answers held each command for about 37 s) and hide a dropped connection.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = connect_timeout() if timeout is None else timeout
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        options: dict[str, Any] = {
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "client_name": name,
            **kwargs,
        }
        if self.unix_path:
            return redis.Redis(unix_socket_path=self.unix_path, **options)
        if self.tls:
            options["ssl"] = True
        return redis.Redis(host=self.host or "localhost", port=self.port or 6379, **options)


def given_url(url: str | None, option: str = "--url") -> str | None:
    """A URL option as given: None when it was left out, an error when it was given empty (an unset variable in
    `--url "$REDIS_URL"` must not silently mean a sandbox)."""
    if url is not None and not url.strip():
        raise ProbeError(f"{option} is empty: give a URL such as redis://host:6379/0, or leave {option} out to use "
                         "a disposable sandbox")
    return url


def parse_target(url: str) -> Target:
    """Parse a redis://, rediss:// or unix:// URL, or raise a one-line `ProbeError` that hides the password."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeError(f"bad URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ProbeError(f"bad URL {shown!r}: the scheme must be redis://, rediss:// or unix://")
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if username and password is None:
        username, password = None, username  # redis://secret@host means a password alone
    # ?password= and ?username= as redis-py's from_url reads them
    username = username or (query.get("username") or [None])[0]
    password = password or (query.get("password") or [None])[0]
    remember_secret(password)
    db_text = query.get("db", [""])[0]
    if scheme == "unix":
        if not parts.path:
            raise ProbeError(f"bad URL {shown!r}: a unix:// URL needs a socket path")
        db = _parse_db(db_text or "0", shown)
        return Target(url=url, host=None, port=None, db=db, unix_path=parts.path,
                      username=username, password=password)
    if not parts.hostname:
        raise ProbeError(f"bad URL {shown!r}: no host")
    try:
        parts.hostname.encode("idna")  # what resolving it will do: a label over 63 characters fails there
    except UnicodeError:
        raise ProbeError(f"bad URL {shown!r}: {parts.hostname[:40]!r}... is not a valid host name (too long, or a "
                         "label over 63 characters)") from None
    path = parts.path.lstrip("/")
    db = _parse_db(path or db_text or "0", shown)
    return Target(url=url, host=parts.hostname, port=port or 6379, db=db,
                  tls=scheme in {"rediss", "valkeys"}, username=username, password=password)


def _parse_db(text: str, shown: str) -> int:
    if not text.isdigit():
        raise ProbeError(f"bad URL {shown!r}: the db must be a number, not {text!r}")
    return int(text)


def describe_redis_error(exc: BaseException, target: Target) -> str:
    """One line that says what went wrong with `target`, in the user's words, without secrets."""
    import redis.exceptions as rex

    where = target.label
    text = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if (isinstance(exc, rex.AuthorizationError) or text.startswith("NOAUTH") or "Authentication required" in text
            or "already authenticated" in text):
        return f"authentication required by {where}: put the password in the URL (redis://:PASSWORD@host)"
    if isinstance(exc, rex.AuthenticationError) or "WRONGPASS" in text or "invalid password" in text:
        return f"authentication failed for {where}: wrong user name or password"
    if isinstance(exc, rex.NoPermissionError) or "NOPERM" in text:
        return f"missing ACL permission on {where}: {text}"
    if isinstance(exc, rex.TimeoutError):
        return f"timed out talking to {where} (no answer within {connect_timeout():g}s; see --connect-timeout)"
    if isinstance(exc, rex.ConnectionError | OSError):
        reason = text.split(". ")[-1] if "Error" in text else text
        return f"cannot connect to {where}: {reason}"
    return f"{where}: {text}"


def ping(client: redis.Redis) -> bool:
    """PING, where a server in MISCONF (its last save failed) answers with an error yet is up and readable:
    refusing to attach to it would hide the very refusals a user came to see."""
    import redis.exceptions as rex

    try:
        return bool(client.ping())
    except rex.ResponseError as exc:
        if str(exc).startswith("MISCONF"):
            return True
        raise


def check_connection(client: redis.Redis, target: Target) -> None:
    """PING the server and try the introspection every actor needs (INFO, CLIENT ID), so a refused
    connection, a wrong password or a missing ACL permission is one clear error before anything starts."""
    import redis.exceptions as rex

    try:
        pong = ping(client)
        info = client.info("server")
        client_id = client.client_id()
    except (rex.RedisError, OSError) as exc:
        raise ConnectionProblem(describe_redis_error(exc, target)) from None
    except (ValueError, TypeError, AttributeError):  # a reply redis-py could not even parse
        pong, info, client_id = None, None, None
    if pong is not True or not isinstance(info, dict) or "run_id" not in info or not isinstance(client_id, int):
        raise ConnectionProblem(f"{target.label} does not answer like Redis (its replies to PING, INFO and CLIENT "
                                "ID are not Redis replies): is it the right port?")


def check_target(target: Target) -> None:
    """Connect once and check, closing the connection afterwards."""
    client = target.connect()
    try:
        check_connection(client, target)
    finally:
        client.close()
