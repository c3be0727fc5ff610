-- The operations feed (/_acr-import/operations and its event stream): every insert and every
-- visible change of an operation (state, progress, error) takes the next value of one sequence,
-- so a reader can ask "what changed after N" and an event stream can resume from Last-Event-ID.
-- Lease renewals that change nothing visible do not count.
create sequence operation_change_seq;
alter table operations add column change_seq bigint not null default 0;
update operations set change_seq = nextval('operation_change_seq');

create function operations_bump_change_seq() returns trigger language plpgsql as $$
begin
    new.change_seq := nextval('operation_change_seq');
    return new;
end $$;

create trigger operations_change_on_insert before insert on operations
    for each row execute function operations_bump_change_seq();
create trigger operations_change_on_update before update on operations
    for each row
    when (old.state is distinct from new.state
          or old.progress is distinct from new.progress
          or old.percent_complete is distinct from new.percent_complete
          or old.error_message is distinct from new.error_message
          or old.started_at is distinct from new.started_at)
    execute function operations_bump_change_seq();

create index operations_change_seq on operations (change_seq);
-- The feed lists newest first.
create index operations_created on operations (created_at desc, id desc);
