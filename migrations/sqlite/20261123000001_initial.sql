-- The embedded store: the schema of migrations/postgres in SQLite (same tables, columns and
-- rules), for a single process. Tables are STRICT so a column holds only its declared type.
--
-- Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ': fixed width, so text order is time
-- order (the claim compares run_at and lease_expires_at as text); the store writes them, the
-- defaults below produce the same shape. JSON columns are text holding a JSON document.

-- Emulated registries. Names are globally unique (case-insensitively), as in Azure.
create table registries (
    name_lower           text primary key,
    name                 text not null,
    subscription_id      text not null,
    resource_group       text not null,
    -- resource_group lowercased by the store: SQLite's lower() folds ASCII only, and resource
    -- group names may hold other letters.
    resource_group_lower text not null,
    location             text not null,
    sku                  text not null,
    tags                 text check (tags is null or json_valid(tags)),
    properties           text not null default '{}' check (json_valid(properties)),
    created_at           text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at           text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
) strict;
create index registries_by_group on registries (subscription_id, resource_group_lower);

-- The operation row is the job: inserted runnable, claimed by one short write transaction,
-- leased while running, fenced by attempt on every write after the claim.
create table operations (
    id               text primary key,             -- registries-<guid>
    subscription_id  text not null,
    resource_group   text not null,
    registry_name    text not null,                -- target registry as addressed
    location         text not null,                -- region of the target (for the status URLs)
    api_version      text not null,
    request          text not null check (json_valid(request)),  -- StoredImport: no credentials
    credentials      text check (credentials is null or json_valid(credentials)),
                                                   -- source credentials; null once the operation ends
    state            text not null default 'Queued'
                     check (state in ('Queued', 'Running', 'Succeeded', 'Failed', 'Canceled')),
    attempt          integer not null default 0,
    run_at           text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
                     check (run_at like '____-__-__T__:__:__.______Z'),
    lease_owner      text,
    lease_expires_at text check (lease_expires_at is null
                                 or lease_expires_at like '____-__-__T__:__:__.______Z'),
    progress         text check (progress is null or json_valid(progress)),
    percent_complete real not null default 0,
    error_code       text,
    error_message    text,
    error_status     integer,
    created_at       text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    started_at       text,
    ended_at         text,
    check ((state in ('Succeeded', 'Failed', 'Canceled')) = (ended_at is not null)),
    check (state not in ('Succeeded', 'Failed', 'Canceled') or credentials is null)
) strict;
-- Only unfinished rows are ever scanned by the claim query.
create index operations_runnable on operations (run_at) where state in ('Queued', 'Running');
