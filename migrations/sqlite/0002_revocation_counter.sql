-- Bumped by every revocation of a grant, in the same statement, so that every server process
-- knows when to forget what it remembers about grants (see src/storage/memo.rs).
CREATE TABLE revocation_counter (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO revocation_counter (id, n) VALUES (1, 0);
