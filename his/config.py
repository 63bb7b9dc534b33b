"""Settings, read only from ``HIS_*`` environment variables and checked before the app starts.

Everything is validated in one place so a mistyped port or a missing secret stops the
process at start-up with a message naming the variable, instead of failing on the
first request at 3 a.m.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("production", "development", "test")
MIN_SECRET_LENGTH = 32
_MISSING_KEY_HELP = (
    "required in production; generate one with "
    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
)


class ConfigError(ValueError):
    """Raised with every problem found, one line per variable."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        lines = [f"{name}: {message}" for name, message in sorted(problems.items())]
        super().__init__("Invalid configuration:\n  " + "\n  ".join(lines))


def _bool(name: str, raw: str, problems: dict[str, str]) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    problems[name] = f"expected true or false, got {raw!r}"
    return False


def _gateway_url(env: Mapping[str, str], prefix: str, problems: dict[str, str]) -> str:
    """``{prefix}_URL`` of an outside service (empty: not configured), which then needs
    ``{prefix}_USERNAME`` and ``{prefix}_PASSWORD``."""
    url = env.get(f"{prefix}_URL", "").strip().rstrip("/")
    if url and not url.startswith(("https://", "http://")):
        problems[f"{prefix}_URL"] = "must be an http(s) URL"
    for needed in (f"{prefix}_USERNAME", f"{prefix}_PASSWORD"):
        if url and not env.get(needed):
            problems[needed] = f"required when {prefix}_URL is set"
    return url


def _int(name: str, raw: str, problems: dict[str, str], low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        problems[name] = f"expected an integer, got {raw!r}"
        return low
    if not low <= value <= high:
        problems[name] = f"must be between {low} and {high}, got {value}"
    return value


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


def normalise_database_url(url: str) -> str:
    """Accept the libpq-style ``postgresql://`` URL operators type, and use psycopg 3 for it."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    env: str = "production"
    database_url: str = ""
    secret_key: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    mllp_port: int = 2575
    instance_dir: Path = PROJECT_ROOT / "instance"
    cookie_secure: bool = True
    token_ttl_minutes: int = 8 * 60
    # Web sessions end after this long without a request, and this long after login
    # whatever the activity; admin actions need the password again after reauth_minutes.
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    reauth_minutes: int = 15
    # Passwords set through `his user create`, and the per-account lockout: after
    # lock_after consecutive failures the account is locked for lock_minutes, doubled at
    # each further lock, at most lock_max_minutes.
    password_min_length: int = 12
    lock_after: int = 5
    lock_minutes: int = 1
    lock_max_minutes: int = 60
    login_rate_limit: str = "5 per minute"
    ratelimit_storage_url: str = "memory://"
    log_format: str = "json"
    log_level: str = "INFO"
    default_locale: str = "vi"
    max_content_length: int = 10 * 1024 * 1024
    trusted_proxies: int = 0
    web_workers: int = 2
    web_threads: int = 2
    bhyt_gateway_url: str = ""
    bhyt_gateway_username: str = ""
    bhyt_gateway_password: str = field(default="", repr=False)
    bhyt_gateway_staff_name: str = ""
    bhyt_gateway_staff_cccd: str = ""
    bhyt_gateway_timeout: float = 5.0
    eprescription_url: str = ""
    eprescription_username: str = ""
    eprescription_password: str = field(default="", repr=False)
    eprescription_timeout: float = 10.0
    # Claim files: the BHXH assessment gateway, and where each facility's signing key and
    # certificate are kept (<code>.key.pem, <code>.cert.pem).
    bhxh_gateway_url: str = ""
    bhxh_gateway_username: str = ""
    bhxh_gateway_password: str = field(default="", repr=False)
    bhxh_gateway_timeout: float = 30.0
    claim_keys_dir: Path = PROJECT_ROOT / "instance" / "claim-keys"
    # FHIR Bulk Data: concurrent exports per client (more → 429) and how long files stay.
    fhir_export_max_concurrent: int = 2
    fhir_export_retention_hours: int = 24
    # HL7 v2 over MLLP: the listener, how we name ourselves, and the outbound dispatcher.
    mllp_host: str = "127.0.0.1"
    mllp_max_frame: int = 10 * 1024 * 1024
    mllp_idle_timeout: float = 300.0
    mllp_max_connections: int = 100
    mllp_frame_timeout: float = 60.0
    hl7_application: str = "HIS"
    hl7_unknown_senders: str = "reject"  # reject (AR) | store (kept, never applied)
    hl7_retry_max_seconds: float = 30.0
    hl7_ack_timeout: float = 30.0

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        problems: dict[str, str] = {}

        mode = env.get("HIS_ENV", "production").strip().lower()
        if mode not in ENVIRONMENTS:
            problems["HIS_ENV"] = f"must be one of {', '.join(ENVIRONMENTS)}, got {mode!r}"

        instance_dir = Path(env.get("HIS_INSTANCE_DIR") or PROJECT_ROOT / "instance")
        database_url = normalise_database_url(
            env.get("HIS_DATABASE_URL") or sqlite_url(instance_dir / "his.sqlite3")
        )
        if not database_url.startswith(("sqlite", "postgresql")):
            problems["HIS_DATABASE_URL"] = (
                "only SQLite (sqlite:///path) and PostgreSQL (postgresql://...) are supported"
            )

        secret_key = env.get("HIS_SECRET_KEY", "")
        if mode == "production":
            if not secret_key:
                problems["HIS_SECRET_KEY"] = _MISSING_KEY_HELP
            elif len(secret_key) < MIN_SECRET_LENGTH:
                problems["HIS_SECRET_KEY"] = f"must be at least {MIN_SECRET_LENGTH} characters"
        elif not secret_key:
            # Development and test get a throwaway key per process: sessions simply do not
            # survive a restart, which is what a developer expects.
            import secrets

            secret_key = secrets.token_urlsafe(48)

        port = _int("HIS_PORT", env.get("HIS_PORT", "8000"), problems, 1, 65535)
        mllp_port = _int("HIS_MLLP_PORT", env.get("HIS_MLLP_PORT", "2575"), problems, 1, 65535)
        if "HIS_PORT" not in problems and port == mllp_port:
            problems["HIS_MLLP_PORT"] = "must differ from HIS_PORT"

        cookie_secure = _bool(
            "HIS_COOKIE_SECURE",
            env.get("HIS_COOKIE_SECURE", "true" if mode == "production" else "false"),
            problems,
        )
        token_ttl = _int(
            "HIS_TOKEN_TTL_MINUTES", env.get("HIS_TOKEN_TTL_MINUTES", "480"), problems, 1, 43200
        )
        session_idle = _int(
            "HIS_SESSION_IDLE_MINUTES", env.get("HIS_SESSION_IDLE_MINUTES", "30"), problems, 1, 1440
        )
        session_max = _int(
            "HIS_SESSION_MAX_HOURS", env.get("HIS_SESSION_MAX_HOURS", "12"), problems, 1, 168
        )
        reauth = _int("HIS_REAUTH_MINUTES", env.get("HIS_REAUTH_MINUTES", "15"), problems, 1, 1440)
        password_min = _int(
            "HIS_PASSWORD_MIN_LENGTH", env.get("HIS_PASSWORD_MIN_LENGTH", "12"), problems, 8, 128
        )
        lock_after = _int(
            "HIS_LOGIN_LOCK_AFTER", env.get("HIS_LOGIN_LOCK_AFTER", "5"), problems, 1, 100
        )
        lock_minutes = _int(
            "HIS_LOGIN_LOCK_MINUTES", env.get("HIS_LOGIN_LOCK_MINUTES", "1"), problems, 1, 1440
        )
        lock_max = _int(
            "HIS_LOGIN_LOCK_MAX_MINUTES",
            env.get("HIS_LOGIN_LOCK_MAX_MINUTES", "60"),
            problems,
            1,
            7 * 1440,
        )
        log_format = env.get("HIS_LOG_FORMAT", "json" if mode == "production" else "console")
        if log_format not in ("json", "console"):
            problems["HIS_LOG_FORMAT"] = f"must be json or console, got {log_format!r}"
        log_level = env.get("HIS_LOG_LEVEL", "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems["HIS_LOG_LEVEL"] = f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}"
        locale = env.get("HIS_DEFAULT_LOCALE", "vi")
        if locale not in ("vi", "en"):
            problems["HIS_DEFAULT_LOCALE"] = f"must be vi or en, got {locale!r}"
        max_body = _int(
            "HIS_MAX_CONTENT_LENGTH",
            env.get("HIS_MAX_CONTENT_LENGTH", str(10 * 1024 * 1024)),
            problems,
            1024,
            1024 * 1024 * 1024,
        )

        workers = _int("HIS_WEB_WORKERS", env.get("HIS_WEB_WORKERS", "2"), problems, 1, 64)
        threads = _int("HIS_WEB_THREADS", env.get("HIS_WEB_THREADS", "2"), problems, 1, 64)
        gateway_url = _gateway_url(env, "HIS_BHYT_GATEWAY", problems)
        gateway_timeout = _int(
            "HIS_BHYT_GATEWAY_TIMEOUT_SECONDS",
            env.get("HIS_BHYT_GATEWAY_TIMEOUT_SECONDS", "5"),
            problems,
            1,
            60,
        )
        eprescription_url = _gateway_url(env, "HIS_EPRESCRIPTION", problems)
        # The social-insurance (BHXH) assessment gateway that takes the signed claim files.
        bhxh_url = _gateway_url(env, "HIS_BHXH_GATEWAY", problems)
        bhxh_timeout = _int(
            "HIS_BHXH_GATEWAY_TIMEOUT_SECONDS",
            env.get("HIS_BHXH_GATEWAY_TIMEOUT_SECONDS", "30"),
            problems,
            1,
            300,
        )
        eprescription_timeout = _int(
            "HIS_EPRESCRIPTION_TIMEOUT_SECONDS",
            env.get("HIS_EPRESCRIPTION_TIMEOUT_SECONDS", "10"),
            problems,
            1,
            120,
        )
        export_max = _int(
            "HIS_FHIR_EXPORT_MAX_CONCURRENT",
            env.get("HIS_FHIR_EXPORT_MAX_CONCURRENT", "2"),
            problems,
            1,
            100,
        )
        export_retention = _int(
            "HIS_FHIR_EXPORT_RETENTION_HOURS",
            env.get("HIS_FHIR_EXPORT_RETENTION_HOURS", "24"),
            problems,
            1,
            24 * 90,
        )
        mllp_max_frame = _int(
            "HIS_MLLP_MAX_FRAME_BYTES",
            env.get("HIS_MLLP_MAX_FRAME_BYTES", str(10 * 1024 * 1024)),
            problems,
            1024,
            512 * 1024 * 1024,
        )
        mllp_idle = _int(
            "HIS_MLLP_IDLE_TIMEOUT_SECONDS",
            env.get("HIS_MLLP_IDLE_TIMEOUT_SECONDS", "300"),
            problems,
            1,
            86400,
        )
        mllp_connections = _int(
            "HIS_MLLP_MAX_CONNECTIONS",
            env.get("HIS_MLLP_MAX_CONNECTIONS", "100"),
            problems,
            1,
            10000,
        )
        mllp_frame_timeout = _int(
            "HIS_MLLP_FRAME_TIMEOUT_SECONDS",
            env.get("HIS_MLLP_FRAME_TIMEOUT_SECONDS", "60"),
            problems,
            1,
            3600,
        )
        unknown_senders = env.get("HIS_HL7_UNKNOWN_SENDERS", "reject").strip().lower()
        if unknown_senders not in ("reject", "store"):
            problems["HIS_HL7_UNKNOWN_SENDERS"] = (
                f"must be reject or store, got {unknown_senders!r}"
            )
        retry_max = _int(
            "HIS_HL7_RETRY_MAX_SECONDS",
            env.get("HIS_HL7_RETRY_MAX_SECONDS", "30"),
            problems,
            1,
            3600,
        )
        ack_timeout = _int(
            "HIS_HL7_ACK_TIMEOUT_SECONDS",
            env.get("HIS_HL7_ACK_TIMEOUT_SECONDS", "30"),
            problems,
            1,
            600,
        )
        proxies = _int("HIS_TRUSTED_PROXIES", env.get("HIS_TRUSTED_PROXIES", "0"), problems, 0, 5)

        if problems:
            raise ConfigError(problems)
        return cls(
            env=mode,
            database_url=database_url,
            secret_key=secret_key,
            host=env.get("HIS_HOST", "127.0.0.1"),
            port=port,
            mllp_port=mllp_port,
            instance_dir=instance_dir,
            cookie_secure=cookie_secure,
            token_ttl_minutes=token_ttl,
            session_idle_minutes=session_idle,
            session_max_hours=session_max,
            reauth_minutes=reauth,
            password_min_length=password_min,
            lock_after=lock_after,
            lock_minutes=lock_minutes,
            lock_max_minutes=max(lock_max, lock_minutes),
            login_rate_limit=env.get("HIS_LOGIN_RATE_LIMIT", "5 per minute"),
            ratelimit_storage_url=env.get("HIS_RATELIMIT_STORAGE_URL", "memory://"),
            log_format=log_format,
            log_level=log_level,
            default_locale=locale,
            max_content_length=max_body,
            trusted_proxies=proxies,
            web_workers=workers,
            web_threads=threads,
            bhyt_gateway_url=gateway_url,
            bhyt_gateway_username=env.get("HIS_BHYT_GATEWAY_USERNAME", ""),
            bhyt_gateway_password=env.get("HIS_BHYT_GATEWAY_PASSWORD", ""),
            bhyt_gateway_timeout=float(gateway_timeout),
            # Official Letter 1923/BHXH: a lookup names the staff member who makes it.
            bhyt_gateway_staff_name=env.get("HIS_BHYT_GATEWAY_STAFF_NAME", ""),
            bhyt_gateway_staff_cccd=env.get("HIS_BHYT_GATEWAY_STAFF_CCCD", ""),
            eprescription_url=eprescription_url,
            eprescription_username=env.get("HIS_EPRESCRIPTION_USERNAME", ""),
            eprescription_password=env.get("HIS_EPRESCRIPTION_PASSWORD", ""),
            eprescription_timeout=float(eprescription_timeout),
            bhxh_gateway_url=bhxh_url,
            bhxh_gateway_username=env.get("HIS_BHXH_GATEWAY_USERNAME", ""),
            bhxh_gateway_password=env.get("HIS_BHXH_GATEWAY_PASSWORD", ""),
            bhxh_gateway_timeout=float(bhxh_timeout),
            claim_keys_dir=Path(env.get("HIS_CLAIM_KEYS_DIR") or instance_dir / "claim-keys"),
            fhir_export_max_concurrent=export_max,
            fhir_export_retention_hours=export_retention,
            mllp_host=env.get("HIS_MLLP_HOST", env.get("HIS_HOST", "127.0.0.1")),
            mllp_max_frame=mllp_max_frame,
            mllp_idle_timeout=float(mllp_idle),
            mllp_max_connections=mllp_connections,
            mllp_frame_timeout=float(mllp_frame_timeout),
            hl7_application=env.get("HIS_HL7_APPLICATION", "HIS").strip() or "HIS",
            hl7_unknown_senders=unknown_senders,
            hl7_retry_max_seconds=float(retry_max),
            hl7_ack_timeout=float(ack_timeout),
        )
