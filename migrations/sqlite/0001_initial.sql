-- Initial schema. Times are Unix seconds; string lists are JSON arrays in TEXT columns.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE clients (
    id                        TEXT PRIMARY KEY NOT NULL,
    name                      TEXT NOT NULL,
    secret_hash               TEXT,
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    public                    BOOLEAN NOT NULL,
    default_scopes            TEXT NOT NULL,
    skip_approval             BOOLEAN NOT NULL,
    allowed_connectors        TEXT NOT NULL,
    created_at                INTEGER NOT NULL
);

CREATE TABLE auth_requests (
    id             TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    response_mode  TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT,
    prompt         TEXT NOT NULL,
    max_age        INTEGER,
    login_hint     TEXT,
    connector_id   TEXT,
    device_request_id TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX auth_requests_expires_at ON auth_requests (expires_at);

CREATE TABLE auth_codes (
    id             TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    user_id        TEXT NOT NULL,
    connector_id   TEXT NOT NULL,
    session_id     TEXT,
    auth_time      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    redeemed_at    INTEGER
);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE revoked_grants (
    grant_id   TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_grants_expires_at ON revoked_grants (expires_at);

CREATE TABLE refresh_tokens (
    id                  TEXT PRIMARY KEY NOT NULL,
    secret_hash         TEXT NOT NULL,
    family_id           TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    connector_id        TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    nonce               TEXT,
    session_id          TEXT,
    auth_time           INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    rotated_at          INTEGER,
    revoked             BOOLEAN NOT NULL
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_absolute_expires_at ON refresh_tokens (absolute_expires_at);

CREATE TABLE users (
    id             TEXT PRIMARY KEY NOT NULL,
    connector_id   TEXT NOT NULL,
    upstream_id    TEXT NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    display_name   TEXT,
    email          TEXT,
    email_verified BOOLEAN NOT NULL,
    phone          TEXT,
    picture        TEXT,
    user_groups    TEXT NOT NULL,
    -- Opaque upstream data (such as an upstream refresh token) from the last login.
    connector_data TEXT,
    created_at     INTEGER NOT NULL,
    last_login_at  INTEGER NOT NULL,
    UNIQUE (connector_id, upstream_id)
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    alg         TEXT NOT NULL,
    private_der BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    rotate_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT,
    data       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE device_requests (
    id             TEXT PRIMARY KEY NOT NULL,
    user_code      TEXT NOT NULL UNIQUE,
    client_id      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    poll_interval  INTEGER NOT NULL,
    last_polled_at INTEGER,
    status         TEXT NOT NULL,
    user_id        TEXT,
    connector_id   TEXT,
    auth_time      INTEGER,
    session_id     TEXT
);
CREATE INDEX device_requests_expires_at ON device_requests (expires_at);

CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    user_id      TEXT,
    client_id    TEXT,
    connector_id TEXT,
    detail       TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user_id ON audit_events (user_id, at);

-- Who runs periodic work (garbage collection) among replicas, and until when.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
