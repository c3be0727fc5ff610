-- Secrets every replica must share (the login servers' token signing key): the first process
-- that needs one inserts it, every other one reads it.
create table service_secrets (
    name       text primary key,
    value      text not null,                  -- hex
    created_at timestamptz not null default now()
);
