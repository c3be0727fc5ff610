-- NoForce imports reserve the tags they will write (see migrations/postgres): held by one
-- attempt of one operation, counted only while that attempt runs with an unexpired lease,
-- deleted when the operation finishes or is released.
create table tag_reservations (
    repository   text not null,                -- backend repository: <registry>/<repo>
    tag          text not null,
    operation_id text not null references operations (id) on delete cascade,
    attempt      integer not null,
    reserved_at  text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    primary key (repository, tag)
) strict;
create index tag_reservations_by_operation on tag_reservations (operation_id);
