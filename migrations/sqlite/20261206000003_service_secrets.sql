-- See migrations/postgres: secrets every process on the store shares.
create table service_secrets (
    name       text primary key,
    value      text not null,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
) strict;
