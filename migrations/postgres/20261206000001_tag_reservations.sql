-- NoForce imports reserve the tags they will write, so that among concurrent imports naming one
-- tag exactly one writes it (across workers and processes). A reservation is held by one
-- attempt of one operation; it counts only while that attempt runs with an unexpired lease
-- (a killed worker's reservation lapses with its lease), and it is deleted by the statement
-- that finishes or releases the operation.
create table tag_reservations (
    repository   text not null,                -- backend repository: <registry>/<repo>
    tag          text not null,
    operation_id text not null references operations (id) on delete cascade,
    attempt      integer not null,
    reserved_at  timestamptz not null default now(),
    primary key (repository, tag)
);
create index tag_reservations_by_operation on tag_reservations (operation_id);
