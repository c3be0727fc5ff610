-- See migrations/postgres: every insert and every visible change of an operation takes the
-- next value of one counter (a one-row table: never reused, even when rows are deleted).
-- SQLite's single writer makes the counter monotonic in commit order. The triggers update
-- the row they fire for; recursive triggers are off, and the WHEN clause stops a second round.
create table operation_change_counter (
    id  integer primary key check (id = 1),
    seq integer not null
) strict;
insert into operation_change_counter (id, seq) values (1, 0);

alter table operations add column change_seq integer not null default 0;
update operations set change_seq = rowid;
update operation_change_counter set seq = (select coalesce(max(change_seq), 0) from operations);

create trigger operations_change_on_insert after insert on operations
begin
    update operation_change_counter set seq = seq + 1 where id = 1;
    update operations set change_seq = (select seq from operation_change_counter where id = 1)
     where id = new.id;
end;

create trigger operations_change_on_update after update on operations
    when new.change_seq = old.change_seq
     and (old.state is not new.state
          or old.progress is not new.progress
          or old.percent_complete is not new.percent_complete
          or old.error_message is not new.error_message
          or old.started_at is not new.started_at)
begin
    update operation_change_counter set seq = seq + 1 where id = 1;
    update operations set change_seq = (select seq from operation_change_counter where id = 1)
     where id = new.id;
end;

create index operations_change_seq on operations (change_seq);
create index operations_created on operations (created_at desc, id desc);
