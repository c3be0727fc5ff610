-- Emulated registries. Names are globally unique (case-insensitively), as in Azure.
create table registries (
    name_lower      text primary key,
    name            text not null,
    subscription_id text not null,
    resource_group  text not null,
    location        text not null,
    sku             text not null,
    tags            jsonb,
    properties      jsonb not null default '{}'::jsonb,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index registries_by_group on registries (subscription_id, lower(resource_group));

-- The operation row is the job: inserted runnable, claimed with FOR UPDATE SKIP LOCKED,
-- leased while running, fenced by attempt on every write after the claim.
create table operations (
    id               text primary key,             -- registries-<guid>
    subscription_id  text not null,
    resource_group   text not null,
    registry_name    text not null,                -- target registry as addressed
    location         text not null,                -- region of the target (for the status URLs)
    api_version      text not null,
    request          jsonb not null,               -- StoredImport: no credentials
    credentials      jsonb,                        -- source credentials; null once the operation ends
    state            text not null default 'Queued'
                     check (state in ('Queued', 'Running', 'Succeeded', 'Failed', 'Canceled')),
    attempt          integer not null default 0,
    run_at           timestamptz not null default now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    progress         jsonb,
    percent_complete double precision not null default 0,
    error_code       text,
    error_message    text,
    error_status     integer,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    ended_at         timestamptz,
    check ((state in ('Succeeded', 'Failed', 'Canceled')) = (ended_at is not null)),
    check (state not in ('Succeeded', 'Failed', 'Canceled') or credentials is null)
);
-- Only unfinished rows are ever scanned by the claim query.
create index operations_runnable on operations (run_at) where state in ('Queued', 'Running');
