-- Bumped by every revocation of a grant, in the same transaction, so that every server
-- process knows when to forget what it remembers about grants (see src/storage/memo.rs).
CREATE TABLE revocation_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO revocation_counter (id, n) VALUES (1, 0);
